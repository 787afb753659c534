"""News and social sources, the pure half: feed entries and JSON-lines records to messages
(cleaned, tagged, time-stamped by publication), feed bytes to entries, dedupe by content.

The fetching, the per-feed state and the publishing are in `connectors.news`."""
