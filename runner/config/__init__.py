"""Stage 1, the config: the typed schema and its enums, validation into a job spec (requests,
settings, points), the kind table, the Hydra guard and overrides; imports no TensorFlow or SymPy."""
