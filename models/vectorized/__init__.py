"""A vectorised evaluator of the strategy language: whole arrays of bars at once, for parameter
sweeps and for checking the event-driven desk (the same trades on the same bars)."""
