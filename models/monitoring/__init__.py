"""Alerts: which reach the user, and how they read."""
