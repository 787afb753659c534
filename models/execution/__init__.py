"""Orders after the decision: the simulated venue, execution reports, order and fill rules."""
