"""The review loop: every proposal passes its reviewers before any order exists."""
