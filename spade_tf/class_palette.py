"""Generated colours: many distinct, well separated colours, the same for every run.

For classes that come without colours (numbered classes, class files that give none).
Numpy only.
"""

from __future__ import annotations

import functools

import numpy as np

from spade_tf.class_table import (
    DONTCARE_COLOR,
    UNKNOWN_COLOR,
    ClassTable,
    ClassTableError,
    Color,
)

#: Colours that ``generated_palette`` keeps away from (don't-care and unknown ids).
RESERVED_COLORS: tuple[Color, ...] = (DONTCARE_COLOR, UNKNOWN_COLOR)
_GRID_LEVELS = 16  # generated colours come from a 16 x 16 x 16 grid of the RGB cube
MAX_GENERATED = _GRID_LEVELS ** 3 - len(RESERVED_COLORS)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours [..., 3] in 0..255, to measure how different they look."""
    c = rgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805],
                             [0.2126, 0.7152, 0.0722],
                             [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                     200 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.lru_cache(maxsize=32)
def _generated(n: int) -> np.ndarray:
    levels = np.round(np.linspace(0, 255, _GRID_LEVELS)).astype(np.int64)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    lab = _lab(grid.astype(np.float64))
    nearest = np.full(len(grid), np.inf)
    for reserved in RESERVED_COLORS:  # start as if black and magenta were taken
        nearest = np.minimum(nearest, ((lab - _lab(np.array(reserved, float))) ** 2).sum(-1))
    chosen = []
    for _ in range(n):  # farthest point first: each colour is the one least like the others
        pick = int(np.argmax(nearest))  # ties: the first in grid order, so it is repeatable
        chosen.append(pick)
        nearest = np.minimum(nearest, ((lab - lab[pick]) ** 2).sum(-1))
        nearest[pick] = -1.0
    palette = grid[chosen].astype(np.uint8)
    palette.flags.writeable = False
    return palette


def generated_palette(n: int) -> np.ndarray:
    """uint8 [n, 3]: n distinct, well separated colours, the same for every run.

    Colours are picked one by one from a 16-level RGB grid, each the one least like (in
    CIELAB) those already picked, black (don't-care) and magenta (unknown ids); so the
    first colours are the most different, and ``generated_palette(k)`` is the start of
    ``generated_palette(n)`` for k < n. At most ``MAX_GENERATED`` (4094) colours."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ClassTableError(f"a palette needs a count >= 0, got {n!r}.")
    if n > MAX_GENERATED:
        raise ClassTableError(f"generated palettes have at most {MAX_GENERATED} colours, "
                              f"{n} asked; give the colours in a class file instead.")
    return _generated(int(n))


def generated_table(num_classes: int, source: str = "") -> ClassTable:
    """Classes "class 0" ... "class N-1" in ``generated_palette`` colours."""
    return ClassTable(names=tuple(f"class {i}" for i in range(num_classes)),
                      colors=generated_palette(num_classes),
                      source=source or f"generated: {num_classes} numbered classes, "
                                       "spade_tf.classes.generated_palette colours")
