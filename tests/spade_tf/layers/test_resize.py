import numpy as np
import pytest
import tensorflow as tf
from support.contract import check_layer_contract

from spade_tf.layers import LegacyNearestResize, legacy_nearest_resize
from spade_tf.layers.resize import legacy_nearest_indices


@pytest.mark.parametrize("in_size, out_size, expected", [
    (10, 4, [0, 2, 5, 7]),      # floor(i * 2.5)
    (7, 3, [0, 2, 4]),          # floor(i * 7/3)
    (3, 7, [0, 0, 0, 1, 1, 2, 2]),
    (4, 8, [0, 0, 1, 1, 2, 2, 3, 3]),
    (256, 4, [0, 64, 128, 192]),
    (5, 5, [0, 1, 2, 3, 4]),
])
def test_source_index_is_floor_of_i_times_in_over_out(in_size, out_size, expected):
    assert legacy_nearest_indices(in_size, out_size).numpy().tolist() == expected


def test_known_map_and_difference_from_half_pixel_nearest():
    image = np.arange(8 * 8, dtype=np.float32).reshape(1, 8, 8, 1)
    resized = legacy_nearest_resize(tf.constant(image), (2, 2)).numpy()[0, :, :, 0]
    # Rows and columns 0 and 4: the top-left pixel of each 4x4 cell.
    np.testing.assert_array_equal(resized, [[0, 4], [32, 36]])
    half_pixel = tf.image.resize(image, (2, 2), method="nearest").numpy()[0, :, :, 0]
    assert not np.array_equal(resized, half_pixel)


def test_layer_contract(tmp_path):
    check_layer_contract(lambda: LegacyNearestResize(3, 5), (tf.random.normal((2, 10, 20, 4)),),
                         tmp_path, expected_trainable_weights=0,
                         expected_output_shape=(2, 3, 5, 4))


def test_the_same_size_is_the_map_itself_and_unknown_sizes_still_resize():
    image = tf.random.normal((1, 6, 4, 3))
    assert legacy_nearest_resize(image, (6, 4)) is image

    # Sizes unknown when traced: the gather path, for the same size and for another.
    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3))])
    def resize_traced(images):
        return legacy_nearest_resize(images, (6, 4))

    np.testing.assert_array_equal(resize_traced(image).numpy(), image.numpy())
    other = np.random.default_rng(0).normal(size=(1, 4, 6, 3)).astype(np.float32)
    # rows floor(i * 4 / 6), columns floor(j * 6 / 4)
    expected = other[:, [0, 0, 1, 2, 2, 3]][:, :, [0, 1, 3, 4]]
    np.testing.assert_array_equal(resize_traced(tf.constant(other)).numpy(), expected)
