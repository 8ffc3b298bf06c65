"""The discriminator's pooling between scales: PyTorch's count_include_pad=False."""

import numpy as np
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import AveragePoolExcludingPadding


def test_average_pool_excludes_padding_from_the_mean():
    x = np.random.randn(1, 5, 6, 2).astype(np.float32)
    pooled = AveragePoolExcludingPadding()(tf.constant(x)).numpy()
    assert pooled.shape == (1, 3, 3, 2)
    for i in range(3):
        for j in range(3):
            window = x[0, max(2 * i - 1, 0):2 * i + 2, max(2 * j - 1, 0):2 * j + 2]
            np.testing.assert_allclose(pooled[0, i, j], window.mean(axis=(0, 1)), atol=1e-6)


def test_average_pool_contract(tmp_path):
    check_layer_contract(AveragePoolExcludingPadding, (tf.random.normal((2, 7, 8, 3)),),
                         tmp_path, expected_trainable_weights=0,
                         expected_output_shape=(2, 4, 4, 3))
