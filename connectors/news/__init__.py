"""News and social sources into Kafka: RSS/Atom feeds polled over HTTP and JSON-lines or feed
files loaded for backtests, published to the news and social topics (the pure rules are in
`models.news`)."""
