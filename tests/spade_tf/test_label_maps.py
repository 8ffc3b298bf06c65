"""The one reader of label and instance maps (spade_tf.label_maps): what it takes, what it
refuses and how it says so. The commands' side is in tests/spade_cli (test_grey_maps.py,
test_tfrecords.py)."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from spade_tf import label_maps
from spade_tf.label_maps import LabelMapError, read_id_map

IDS = np.array([[0, 3, 7], [255, 12, 3]], np.uint8)


@pytest.fixture(autouse=True)
def _fresh_note(monkeypatch):
    monkeypatch.setattr(label_maps, "_noted_grey", False)


def _png_16_bit_rgb(ids: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (what cv2.imwrite writes for uint16 [H, W, 3]); Pillow
    cannot write one."""
    rows = b"".join(b"\0" + np.repeat(row[:, None], 3, 1).astype(">u2").tobytes()
                    for row in ids)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", ids.shape[1], ids.shape[0], 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) \
        + chunk(b"IEND", b"")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_a_grey_map_saved_as_colour_reads_as_its_ids_with_one_note(tmp_path, caplog, mode):
    grey = Image.fromarray(IDS).convert(mode)  # equal channels, opaque alpha
    grey.save(tmp_path / "a.png")
    grey.save(tmp_path / "b.png")
    with caplog.at_level(logging.WARNING, logger="spade_tf.label_maps"):
        np.testing.assert_array_equal(read_id_map(tmp_path / "a.png"), IDS)
        np.testing.assert_array_equal(read_id_map(tmp_path / "b.png", "instance map"), IDS)
    assert [record.getMessage() for record in caplog.records] == [
        f"note: the label map {tmp_path / 'a.png'} is an {mode} image whose colour "
        "channels are all equal (a grey map saved as colour): its ids are read from one "
        "channel, here and in every such map."]


def test_a_colour_map_is_refused_naming_the_map_and_the_fix(tmp_path):
    colour = np.stack([IDS, IDS, IDS], -1)
    colour[0, 0] = (128, 64, 0)  # one pixel of colour is enough
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(LabelMapError) as caught:
        read_id_map(tmp_path / "colour.png", "instance map")
    assert str(caught.value) == (
        f"the instance map {tmp_path / 'colour.png'} is an RGB image; expected one channel of "
        "ids (an 8- or 16-bit grayscale or palette PNG): it looks like a colour rendering of "
        "the classes; convert it to a single-channel map of ids with the dataset's palette.")


def test_grey_with_transparent_pixels_and_other_modes_stay_refused(tmp_path):
    rgba = Image.fromarray(IDS).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(tmp_path / "transparent.png")
    with pytest.raises(LabelMapError, match=r"is an RGBA image; expected one channel"):
        read_id_map(tmp_path / "transparent.png")
    Image.fromarray(IDS).convert("CMYK").save(tmp_path / "cmyk.tif")
    with pytest.raises(LabelMapError, match=r"is a CMYK image; expected one channel"):
        read_id_map(tmp_path / "cmyk.tif")


def test_a_16_bit_per_channel_rgb_png_is_refused_not_truncated(tmp_path):
    ids = np.array([[300, 7]], np.uint16)  # 300 would come back as 1 (its high byte)
    (tmp_path / "wide.png").write_bytes(_png_16_bit_rgb(ids))
    with pytest.raises(LabelMapError) as caught:
        read_id_map(tmp_path / "wide.png")
    assert str(caught.value) == (
        f"the label map {tmp_path / 'wide.png'} is a 16-bit-per-channel RGB PNG, which is read "
        "with 8 bits per channel (ids above 255 would change): save it as a single-channel "
        "16-bit grayscale PNG of ids.")


def test_single_channel_maps_read_without_a_note(tmp_path, caplog):
    wide = np.array([[0, 300], [65535, 7]], np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(IDS).convert("P").save(tmp_path / "palette.png")
    with caplog.at_level(logging.WARNING, logger="spade_tf.label_maps"):
        np.testing.assert_array_equal(read_id_map(tmp_path / "wide.png"), wide)
        np.testing.assert_array_equal(read_id_map(tmp_path / "palette.png"), IDS)
    assert caplog.records == []
