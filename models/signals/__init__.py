"""Features, triggers and the strategic/routine routing of a closed bar."""
