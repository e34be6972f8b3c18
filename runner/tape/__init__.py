"""Stage 3, the tape: TensorFlow's start-up, seeds, and the GradientTape program itself."""
