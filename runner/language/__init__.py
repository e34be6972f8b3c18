"""Stage 2, the expression language: one parsed tree, several interpreters (shapes, TensorFlow, SymPy)."""
