"""Pictures of label maps and images for people: contact sheets and an HTML index.

Label maps are drawn in their model's class colours (:mod:`spade_tf.classes`), so a map
looks the same in a grid, on the index page, in TensorBoard and in the painter.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from spade_tf import atomic

MAX_SHEET_ROWS = 16
SHEET_ROW_HEIGHT = 192
GAP = 4


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    # Nearest keeps a colourized label map's colours exact (no blended in-between classes).
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], row_height: int = SHEET_ROW_HEIGHT,
                  max_rows: int = MAX_SHEET_ROWS) -> np.ndarray:
    """uint8 RGB images laid out one row per entry (each cell scaled to ``row_height``),
    white gaps between; at most ``max_rows`` rows."""
    rows = [[_fit_height(np.asarray(cell, np.uint8), row_height) for cell in row]
            for row in rows[:max_rows]]
    if not rows:
        raise ValueError("a contact sheet needs at least one row.")
    widths = [sum(cell.shape[1] for cell in row) + GAP * (len(row) - 1) for row in rows]
    sheet = np.full((len(rows) * (row_height + GAP) - GAP, max(widths), 3), 255, np.uint8)
    for index, row in enumerate(rows):
        top, left = index * (row_height + GAP), 0
        for cell in row:
            sheet[top:top + row_height, left:left + cell.shape[1]] = cell
            left += cell.shape[1] + GAP
    return sheet


def write_index_html(path: str | os.PathLike, title: str, columns: Sequence[str],
                     rows: Sequence[tuple[str, Sequence[tuple[str | os.PathLike,
                                                              tuple[int, int]]]]],
                     note: str = "", head: str = "", row_height: int = 256) -> Path:
    """An HTML table: one row per (name, [(image file, (height, width))]), links relative to
    the page, each picture ``row_height`` pixels high at its own aspect ratio. ``head`` is
    added to the page's head (a tool's mark); the page is written atomically
    (:func:`spade_tf.atomic.write_text`)."""
    page = Path(path)
    folder = page.parent.resolve()

    def relative(file: str | os.PathLike) -> str:
        return html.escape(Path(os.path.relpath(Path(file).resolve(), folder)).as_posix(),
                           quote=True)

    titles = "".join(f"<th>{html.escape(column)}</th>" for column in ("name", *columns))
    body = []
    for name, files in rows:
        cells = "".join(
            f'<td><a href="{relative(f)}"><img src="{relative(f)}" '
            f'alt="{html.escape(Path(f).name)}" '
            f'width="{max(1, round(width * row_height / height))}" height="{row_height}">'
            "</a></td>" for f, (height, width) in files)
        body.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{head}<title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1em}} td,th{{padding:4px;text-align:left;
vertical-align:top}} img{{image-rendering:pixelated}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p>
<table><tr>{titles}</tr>
{chr(10).join(body)}
</table></body></html>
"""
    return atomic.write_text(page, text)
