"""Background work for the gateways, keyed so the flow never waits."""
