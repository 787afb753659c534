"""Market data files and shipped datasets, and their replay onto the market topic."""
