"""Alerts to people: apprise targets, off the flow."""
