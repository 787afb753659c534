"""Strategies: the controller interface, the local engine, strategy specs, their compiler and
life."""
