"""Market input: parsing, event-time guards, bars, per-partition ingest, the merge before the
desk."""
