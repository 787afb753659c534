"""Cash, positions and PnL in Decimal, moved only by fills."""
