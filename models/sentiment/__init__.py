"""Sentiment of news and posts (issue 14): lexicon scores per item, and per symbol per bar
window the features triggers, strategies and the online model read."""
