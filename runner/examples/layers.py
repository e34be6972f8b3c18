"""A Keras layer made by a factory: `_target_: runner.examples.layers.make_dense`.

`conf/experiment/keras_dense.yaml` asks for the gradient of a loss by the layer's weights.
"""


def make_dense(units: int, activation: str | None = None, seed: int = 0, name: str = "dense"):
    """A `keras.layers.Dense` whose kernel starts from Glorot-uniform numbers drawn with `seed`.

    The fixed `name` keeps its variables' paths (`dense/kernel`, `dense/bias`) the same in
    every job: Keras numbers unnamed layers per process (`dense_1` for the second one), so
    the jobs of a sweep run in one process would log different paths.
    """
    import keras

    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name=name,
    )
