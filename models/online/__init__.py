"""Online learning (issue 14): a River model per symbol that learns from the bars' features and
sentiment as they come, and the reviewer that corrects proposals by its confidence."""
