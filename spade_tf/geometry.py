"""Architecture constants and sizes (pure Python: shared by the config and the models)."""

from __future__ import annotations

UPSAMPLING_COUNTS = {"normal": 5, "more": 6, "most": 7}
NORM_TYPES = ("sync_batch", "batch", "instance")
# How the generator modulates its normalized activations: SPADE's convolutions of the label
# map, or CLADE's per-class lookup (Tan et al.); the reference's option --norm_mode.
NORM_MODES = ("spade", "clade")


def generator_geometry(crop_size: int, aspect_ratio: float,
                       num_upsampling_layers: str) -> tuple[int, int, int, int]:
    """(start height, start width, image height, image width), checked.

    The generator starts from a ``sh x sw`` map, ``sw = crop_size // 2**n`` and
    ``sh = round(sw / aspect_ratio)``, and doubles it ``n`` times, so the image is
    ``sh * 2**n`` by ``crop_size``. Errors name the argument to change.
    """
    if num_upsampling_layers not in UPSAMPLING_COUNTS:
        raise ValueError(
            f"num_upsampling_layers={num_upsampling_layers!r} is unknown: expected one of "
            f"{sorted(UPSAMPLING_COUNTS)}."
        )
    count = UPSAMPLING_COUNTS[num_upsampling_layers]
    factor = 2**count
    if crop_size < factor or crop_size % factor:
        nearest = max(factor, round(crop_size / factor) * factor)
        raise ValueError(
            f"crop_size={crop_size} cannot be upsampled to: with num_upsampling_layers="
            f"{num_upsampling_layers!r} ({count} doublings) it must be a multiple of "
            f"{factor}, e.g. {nearest}."
        )
    if aspect_ratio <= 0:
        raise ValueError(f"aspect_ratio={aspect_ratio}: expected width / height > 0.")
    start_width = crop_size // factor
    start_height = round(start_width / aspect_ratio)
    if start_height < 1:
        raise ValueError(
            f"aspect_ratio={aspect_ratio} leaves no rows at the {start_width}-pixel-wide "
            "start of the generator: use a smaller ratio or a larger crop_size."
        )
    return start_height, start_width, start_height * factor, crop_size
