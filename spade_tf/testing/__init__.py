"""Ground truth for tests and benchmarks (needs PyTorch: the ``[convert]`` extra).

``spade_tf.testing.torch_reference``: SPADE's networks written in PyTorch from the
published structure, with the reference's checkpoint key names. The parity tests and
the side-by-side benchmarks compare the Keras networks against it.
"""
