"""Stage 1, the config: the typed schema, validation into a job spec, points, trust, overrides."""
