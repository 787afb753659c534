"""Emulators and generators tests and demos run against: a Binance-compatible exchange, an
OpenAI-compatible server, synthetic tick scenarios."""
