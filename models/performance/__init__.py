"""Performance of a run: round trips paired from fills, and the statistics a trader reads."""
