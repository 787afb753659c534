"""Market change detection (issue 14): River drift detectors on a symbol's returns,
volatility, sentiment and the online model's error."""
