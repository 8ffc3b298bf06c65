"""Ground truth for tests and benchmarks (needs PyTorch: the ``[convert]`` extra).

``spade_tf.testing.torch_reference``: SPADE's networks written in PyTorch from the
published structure, with the reference's checkpoint key names, and the reference's
training step. The parity tests and the side-by-side benchmarks compare the Keras networks
against it. A package of one concept a module (``layers``, ``generator``,
``discriminator``, ``encoder``, ``weights``, ``inputs``, ``losses``, ``training``), whose
``__init__`` gives all their public names::

    from spade_tf.testing import torch_reference as reference
    reference.torch_generator(config)          # randomised, for a spade_tf Config
    reference.ReferenceGauGAN(generator, discriminator, ...).train_step(...)

PyTorch is imported with Triton kept out (:mod:`spade_tf.torch_import`): these run beside
TensorFlow, where PyPI's torch (with triton) would otherwise crash the process.
"""
