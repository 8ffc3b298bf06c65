"""Procedural scene dataset whose photo is a known function of its label map.

Machines used for demos and tests have neither datasets nor internet access,
so this module draws simple outdoor scenes and writes them as plain folders
(``images/``, ``labels/``, ``instances/``) that enter the project like any
user data. Because each photo is a fixed function of its maps, the class of a
pixel can be read back from its colour (``classify_colors``), which lets an
evaluation score generated images with a "synthetic mIoU".

Scene model (``generate_scene``), on a ``size x size`` canvas:

* sky above a horizon at a random 30-60 % of the height, ground below;
* with probability 0.5 a lake (an ellipse below the horizon) and with
  probability 0.6 a road (a strip narrowing towards a vanishing point);
* 2 to 6 objects: trees (triangle crown on a trunk), buildings (rectangles),
  cars (body plus cabin) and persons (head plus body). Each stands on the
  ground and grows as its foot nears the bottom edge; objects are painted far
  to near, so near ones occlude far ones (a hidden object simply vanishes).

Class table (``CLASSES``: the packaged table ``spade_tf/class_tables/synthetic.json``, read
by ``spade_tf.evaluation.synthetic``; the ids are this module's ``SKY`` ... ``PERSON``)::

    id  name      base RGB         kind
    0   sky       (100, 190, 250)  stuff
    1   ground    (200, 180,  90)  stuff
    2   water     ( 20,  40, 180)  stuff
    3   road      ( 60,  55,  60)  stuff
    4   tree      ( 40, 160,  30)  thing
    5   building  (230, 215, 200)  thing
    6   car       (210,  40,  40)  thing
    7   person    (200,  60, 200)  thing

Instance map (uint16), Cityscapes convention: 0 on stuff pixels; the k-th
object of class c (k = 1, 2, ... in painting order) gets ``c * 1000 + k``,
so ids are non-zero, unique within a scene and reveal their class.

Photo (``render_image``): base colour of the class, plus a class texture that
depends only on pixel position (integer stripes, checkers and triangle waves,
at most 12 levels), plus a per-instance shade hashed from the instance id (at
most 6 levels per channel, none for stuff), clipped to [0, 255]. A pixel thus
lies within 18 * sqrt(3) ~ 31 of its base colour while base colours are more
than 100 apart, so the nearest base colour is always the true class. Integer
arithmetic only, so photos are bit-identical on every platform.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from spade_tf.atomic import atomic_path, is_staging_name, write_text
from spade_tf.errors import SpadeError

# The classes are the packaged table class_tables/synthetic.json, which the library reads
# (it never imports these tools): the scenes and their evaluation share it.
from spade_tf.evaluation.synthetic import BASE_COLORS, CLASSES, NUM_CLASSES, THING_CLASSES

SKY, GROUND, WATER, ROAD, TREE, BUILDING, CAR, PERSON = range(NUM_CLASSES)
TEXTURE_AMPLITUDE = 12  # max |texture| in grey levels
SHADE_AMPLITUDE = 6  # max |instance shade| per channel
INSTANCE_STRIDE = 1000  # thing id = class * INSTANCE_STRIDE + k
MANIFEST_NAME = "classes.json"
FORMAT_NAME = "spade-tf-synthetic"
SUBDIRS = ("images", "labels", "instances")
_SCENE_FILE = re.compile(r"scene_\d+\.png")


class SyntheticDataError(SpadeError, ValueError):
    """The synthetic dataset cannot be written as asked (size, count, target folder)."""


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class SyntheticScene:
    image: np.ndarray  # uint8 [H, W, 3]
    label: np.ndarray  # uint8 [H, W], class ids
    instance: np.ndarray  # uint16 [H, W], see module docstring


# --- photo model ------------------------------------------------------------


def _wave(v: np.ndarray, period: int, amp: int) -> np.ndarray:
    """Integer triangle wave with values in [-amp, amp]."""
    half = period // 2
    return np.abs(v % period - half) * 2 * amp // half - amp


def _square(v: np.ndarray, period: int, amp: int) -> np.ndarray:
    return np.where(v % period < period // 2, amp, -amp)


# Texture of each class as a function of pixel row y and column x only.
_TEXTURES: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    SKY: lambda y, x: _wave(y, 32, 8),  # soft horizontal banding
    GROUND: lambda y, x: _wave(x + 2 * y, 10, 10),  # diagonal furrows
    WATER: lambda y, x: _wave(y + _wave(x, 16, 3), 6, 10),  # ripples
    ROAD: lambda y, x: _square(x // 4 + y // 4, 2, 6),  # 4-pixel checker
    TREE: lambda y, x: _wave(x, 6, 6) + _wave(y, 6, 6),  # leafy dots
    BUILDING: lambda y, x: np.where((x % 8 >= 5) & (y % 8 >= 4), -12, 4),  # windows
    CAR: lambda y, x: _square(y, 4, 8),  # horizontal stripes
    PERSON: lambda y, x: _square(x, 4, 8),  # vertical stripes
}


def _instance_shade(instance: np.ndarray) -> np.ndarray:
    """RGB offset in [-6, 6] per channel hashed from the id; 0 for id 0."""
    ids = instance.astype(np.int64)
    hashed = (ids * 2654435761) % 2**32  # Knuth multiplicative hash
    span = 2 * SHADE_AMPLITUDE + 1
    shade = np.stack([(hashed >> s) % span - SHADE_AMPLITUDE for s in (8, 16, 24)], -1)
    return np.where(ids[..., None] == 0, 0, shade)


def _check_maps(label: np.ndarray, instance: np.ndarray) -> None:
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label must be an integer [H, W] array, got {label.dtype} "
                         f"{label.shape}")
    if label.size and (label.min() < 0 or label.max() >= NUM_CLASSES):
        raise ValueError(f"label values must lie in [0, {NUM_CLASSES - 1}], got "
                         f"[{label.min()}, {label.max()}]")
    if instance.shape != label.shape or not np.issubdtype(instance.dtype, np.integer):
        raise ValueError(f"instance must be an integer array of shape {label.shape}, "
                         f"got {instance.dtype} {instance.shape}")


def render_image(label: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """The photo of a scene: a pure function of its label and instance maps."""
    label, instance = np.asarray(label), np.asarray(instance)
    _check_maps(label, instance)
    y, x = np.indices(label.shape, dtype=np.int32)
    texture = np.zeros(label.shape, dtype=np.int32)
    for cls, texture_fn in _TEXTURES.items():
        mask = label == cls
        texture[mask] = texture_fn(y[mask], x[mask])
    rgb = BASE_COLORS[label] + texture[..., None] + _instance_shade(instance)
    return np.clip(rgb, 0, 255).astype(np.uint8)


# --- scene model ------------------------------------------------------------


def _box(v, u, top, bottom, left, right):
    return (v >= top) & (v < bottom) & (u >= left) & (u < right)


def _tree(v, u, h, w):
    crown_h = 0.75 * h  # apex at the top, widening downwards
    crown = (v >= 0) & (v < crown_h) & (np.abs(u - w / 2) <= v / crown_h * w / 2)
    trunk = max(w / 10, 0.5)
    return crown | _box(v, u, 0.7 * h, h, w / 2 - trunk, w / 2 + trunk)


def _car(v, u, h, w):
    return _box(v, u, 0.4 * h, h, 0, w) | _box(v, u, 0, 0.45 * h, 0.2 * w, 0.8 * w)


def _person(v, u, h, w):
    head = ((v - 0.12 * h) / (0.12 * h)) ** 2 + ((u - w / 2) / (0.3 * w)) ** 2 <= 1
    return head | _box(v, u, 0.22 * h, h, 0.15 * w, 0.85 * w)


# Per thing class: (shape in box coordinates, height at the bottom edge as a
# fraction of the canvas, width / height).
_THINGS = {
    TREE: (_tree, 0.45, 0.6),
    BUILDING: (lambda v, u, h, w: _box(v, u, 0, h, 0, w), 0.6, 0.7),
    CAR: (_car, 0.18, 2.0),
    PERSON: (_person, 0.3, 0.35),
}


def _lake(rng: np.random.Generator, y, x, horizon: int) -> np.ndarray:
    size = y.shape[0]
    cy, cx = rng.uniform(horizon, size), rng.uniform(0, size)
    ry, rx = max(rng.uniform(0.05, 0.2) * size, 1), rng.uniform(0.15, 0.4) * size
    return (y >= horizon) & (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1)


def _road(rng: np.random.Generator, y, x, horizon: int) -> np.ndarray:
    size = y.shape[0]
    vanish_x, bottom_x = rng.uniform(0.3, 0.7) * size, rng.uniform(0.2, 0.8) * size
    half_width = rng.uniform(0.15, 0.35) * size
    t = (y - horizon) / (size - horizon)  # 0 at the horizon, 1 at the bottom
    centre = vanish_x + t * (bottom_x - vanish_x)
    return (y >= horizon) & (np.abs(x - centre) <= t * half_width + 0.5)


def _paint_things(rng, label, instance, y, x, horizon: int) -> None:
    size = label.shape[0]
    count = int(rng.integers(2, 7))
    kinds = rng.choice(THING_CLASSES, size=count)
    feet = np.sort(rng.integers(horizon + 1, size + 1, size=count))  # far first
    per_class = dict.fromkeys(THING_CLASSES, 0)
    for kind, foot in zip(kinds.tolist(), feet.tolist(), strict=True):
        shape, rel_height, aspect = _THINGS[kind]
        depth = (foot - horizon) / (size - horizon)  # perspective: near is big
        height = max(4.0, size * rel_height * (0.3 + 0.7 * depth))
        width = height * aspect * rng.uniform(0.8, 1.2)
        left = rng.uniform(-width / 2, size - width / 2)  # at least half in view
        mask = shape(y - (foot - height), x - left, height, width)
        per_class[kind] += 1
        label[mask] = kind
        instance[mask] = kind * INSTANCE_STRIDE + per_class[kind]


def _check_int(name: str, value: object, minimum: int, extra: str = "") -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < minimum:
        raise SyntheticDataError(f"{name} must be an integer >= {minimum}{extra}, "
                         f"got {value!r}")


def _check_size(size: object) -> None:
    _check_int("size", size, 16, " and a multiple of 8")
    if size % 8:
        raise SyntheticDataError(f"size must be an integer >= 16 and a multiple of 8, "
                         f"got {size!r}")


def generate_scene(rng: np.random.Generator, size: int = 128) -> SyntheticScene:
    """Draw one random scene (see the module docstring) of size x size pixels."""
    _check_size(size)
    y, x = np.indices((size, size))
    horizon = int(rng.integers(size * 3 // 10, size * 6 // 10 + 1))
    label = np.where(y < horizon, SKY, GROUND).astype(np.uint8)
    if rng.random() < 0.5:
        label[_lake(rng, y, x, horizon)] = WATER
    if rng.random() < 0.6:
        label[_road(rng, y, x, horizon)] = ROAD
    instance = np.zeros((size, size), dtype=np.uint16)
    _paint_things(rng, label, instance, y, x, horizon)
    return SyntheticScene(render_image(label, instance), label, instance)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """Generator of scene `index` of the dataset `seed`, independent of the others
    (the `index`-th child of SeedSequence(seed)), so any scene can be redrawn."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


# --- dataset on disk ----------------------------------------------------------


def _save_png(array: np.ndarray, path: Path) -> None:
    # PNG is lossless: JPEG artefacts would shift colours off the class table
    # and corrupt label / instance values. uint16 arrays become 16-bit "I;16".
    # Atomic, so an interrupted run never leaves a partial file under a final name.
    with atomic_path(path) as staging:
        Image.fromarray(array).save(staging, format="PNG")


def _is_scene_file(path: Path) -> bool:
    """A scene, or the leftover of an interrupted write of one."""
    name = path.name
    return bool(_SCENE_FILE.fullmatch(name)) or (
        is_staging_name(name) and path.is_file() and bool(_SCENE_FILE.match(name[1:])))


def _is_synthetic(out: Path) -> bool:
    try:
        return json.loads((out / MANIFEST_NAME).read_text())["format"] == FORMAT_NAME
    except (OSError, ValueError, KeyError, TypeError):
        return False


def check_out_dir(out_dir: str | os.PathLike, name: str = "out_dir") -> None:
    """Refuse a target that :func:`write_dataset` would refuse (a file, or a non-empty
    folder that is not an earlier synthetic dataset); ``name`` words the message."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise SyntheticDataError(f"{name} must be a directory, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not _is_synthetic(out):
        raise SyntheticDataError(f"{name} must be new, empty or an earlier synthetic "
                                 f"dataset (with a {FORMAT_NAME} {MANIFEST_NAME}), got the "
                                 f"non-empty directory {out}")


def _prepare_dir(out: Path) -> None:
    check_out_dir(out)
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
        for path in (out / sub).iterdir():  # drop scenes and temps of older runs
            if _is_scene_file(path):
                path.unlink()


def _write_manifest(out: Path, num: int, size: int, seed: int, complete: bool) -> None:
    manifest = {
        "format": FORMAT_NAME, "version": 1, "complete": complete,
        "num_scenes": num, "size": size, "seed": seed, "num_classes": NUM_CLASSES,
        "instance_encoding": f"0 for stuff, class_id * {INSTANCE_STRIDE} + k",
        "classes": [{"id": c.id, "name": c.name, "color": list(c.color),
                     "thing": c.thing} for c in CLASSES],
    }
    write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def write_dataset(out_dir: str | os.PathLike, num: int, size: int = 128,
                  seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write `num` scenes as images/, labels/ (8-bit) and instances/ (16-bit)
    PNG folders plus classes.json; return the dataset directory.

    Scene i is generate_scene(scene_rng(seed, i), size). classes.json is
    written first with "complete": false (marking the folder as ours, so a
    rerun may overwrite it) and rewritten with "complete": true at the end.
    """
    _check_int("num", num, 1)
    _check_size(size)
    _check_int("seed", seed, 0)
    out = Path(out_dir)
    _prepare_dir(out)
    _write_manifest(out, num, size, seed, complete=False)
    digits = max(5, len(str(num - 1)))  # names sort in scene order
    for index in range(num):
        scene = generate_scene(scene_rng(seed, index), size)
        name = f"scene_{index:0{digits}d}.png"
        for sub, array in zip(SUBDIRS, (scene.image, scene.label, scene.instance), strict=True):
            _save_png(array, out / sub / name)
        if progress is not None:
            progress(index + 1, num)
    _write_manifest(out, num, size, seed, complete=True)
    return out
