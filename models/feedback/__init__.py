"""The feedback loop (issue 14): how each running strategy does against what its backtest and
validation promised, and the verdict: keep it, or send it back for review."""
