"""ClickHouse: the store (chdb or a server), row layout, decoding, runs, the flow's sink."""
