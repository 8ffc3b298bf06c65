import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import SPADEResBlock, SpectralNormalization


def _trainable_parameters(layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _spade_parameters(channels, semantic, hidden=8, k=3):
    return semantic * hidden * k * k + hidden + 2 * (hidden * channels * k * k + channels)


def test_learned_shortcut_exactly_when_channels_change():
    x, segmap = tf.random.normal((1, 4, 4, 6)), tf.random.normal((1, 8, 8, 3))
    same = SPADEResBlock(6, hidden_filters=8)
    same(x, segmap)
    assert not same.learned_shortcut and same.conv_s is None and same.norm_s is None
    assert _trainable_parameters(same) == (
        2 * (6 * 6 * 9 + 6) + 2 * _spade_parameters(6, 3))
    down = SPADEResBlock(4, hidden_filters=8)
    down(x, segmap)
    assert down.learned_shortcut
    # fmiddle = min(6, 4); norm_0 and norm_s see 6 channels, norm_1 sees 4; conv_s has no bias.
    assert _trainable_parameters(down) == (
        6 * 4 * 9 + 4 + 4 * 4 * 9 + 4 + 6 * 4
        + 2 * _spade_parameters(6, 3) + _spade_parameters(4, 3))


def test_spectral_norm_on_the_three_convs_only_when_asked():
    x, segmap = tf.random.normal((1, 4, 4, 6)), tf.random.normal((1, 4, 4, 3))
    block = SPADEResBlock(4, hidden_filters=8)
    block(x, segmap)
    assert all(isinstance(c, SpectralNormalization)
               for c in (block.conv_0, block.conv_1, block.conv_s))
    plain = SPADEResBlock(4, hidden_filters=8, use_spectral_norm=False)
    plain(x, segmap)
    assert not any(isinstance(c, SpectralNormalization)
                   for c in (plain.conv_0, plain.conv_1, plain.conv_s))


def test_identity_shortcut_passes_input_through_when_main_path_is_zero():
    x, segmap = tf.random.normal((2, 4, 4, 5)), tf.random.normal((2, 4, 4, 3))
    block = SPADEResBlock(5, hidden_filters=4, use_spectral_norm=False)
    block(x, segmap)
    block.conv_1.kernel.assign(tf.zeros_like(block.conv_1.kernel))
    block.conv_1.bias.assign(tf.zeros_like(block.conv_1.bias))
    np.testing.assert_allclose(block(x, segmap).numpy(), x.numpy(), atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="filters=0"):
        SPADEResBlock(0)
    with pytest.raises(ValueError, match="norm_type='layer'"):
        SPADEResBlock(4, norm_type="layer")


@pytest.mark.parametrize("filters, trainable", [(6, 16), (4, 23)])
def test_contract(filters, trainable, tmp_path):
    args = (tf.random.normal((2, 4, 4, 6)), tf.random.normal((2, 8, 8, 3)))
    check_layer_contract(lambda: SPADEResBlock(filters, hidden_filters=8), args, tmp_path,
                         expected_trainable_weights=trainable,
                         expected_output_shape=(2, 4, 4, filters))
