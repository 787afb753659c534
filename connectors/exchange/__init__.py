"""Real exchanges through ccxt: the order executor and gateway, the live market feed, keys."""
