"""Where each dataset layout keeps its files, and which label ids it may use.

Every layout lists ``Pair``s (photo, label map, optional instance map) by its own naming
rules, and partners that cannot be found become pairs with a ``problem`` so they are
reported with the rest. Label ids are stored as the dataset has them; the ``LabelRule``
says which are valid (``0..num_classes-1``, plus the don't-care id where there is one).

- Cityscapes: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with
  ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` and ``..._gtFine_instanceIds.png``;
  35 classes (label ids 0..34), no don't-care id.
- ADE20K (ADEChallengeData2016): ``ADE_train_*.jpg`` / ``ADE_val_*.jpg`` with the
  ``.png`` annotation of the same name anywhere under the root; ids 0..150 where 0 is
  "other". The reference gives them 151 channels in this order (its shift of the ids by
  one never takes effect), so they are 151 classes here, ids kept as they are.
- COCO-Stuff: ``<split>_img/*.jpg``, ``<split>_label/*.png``, ``<split>_inst/*.png``;
  182 classes (0..181), 255 is don't-care.
- folders: any image and label folders paired by file stem, with the class count and
  don't-care id given by the user.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from spade_tf.errors import SpadeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAP_EXTENSIONS = (".png",)


class DatasetLayoutError(SpadeError, ValueError):
    """The folders do not look like the named dataset (nothing to convert)."""


@dataclasses.dataclass(frozen=True)
class LabelRule:
    num_classes: int
    dontcare_label: int | None = None

    def describe(self) -> str:
        allowed = f"0..{self.num_classes - 1}"
        if self.dontcare_label is not None:
            allowed += f" or {self.dontcare_label} (don't-care)"
        return allowed


@dataclasses.dataclass(frozen=True)
class Pair:
    """One example's files; ``problem`` is set when a partner is missing."""

    key: str
    image: Path | None
    label: Path | None
    instance: Path | None = None
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class DatasetListing:
    name: str
    split: str
    rule: LabelRule
    has_instances: bool
    pairs: tuple[Pair, ...]


def _files(folder: Path, extensions: Iterable[str], pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.rglob(pattern)
                  if p.is_file() and p.suffix.lower() in extensions)


def _require_dir(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise DatasetLayoutError(f"{what} folder {folder} does not exist.")
    return folder


def _relative_key(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace(os.sep, "/")


def _pair_by_stem(images: list[Path], labels: list[Path], instances: list[Path] | None,
                  root: Path, label_dir: Path, instance_dir: Path | None,
                  image_stem=lambda p: p.stem, map_stem=lambda p: p.stem) -> list[Pair]:
    """Pair files whose (transformed) stems agree; unmatched files become problem pairs."""
    label_by_stem = {map_stem(p): p for p in labels}
    instance_by_stem = {map_stem(p): p for p in instances} if instances is not None else None
    pairs, used = [], set()
    for image in images:
        stem = image_stem(image)
        key = _relative_key(image, root)
        label = label_by_stem.get(stem)
        instance = instance_by_stem.get(stem) if instance_by_stem is not None else None
        problem = None
        if label is None:
            problem = f"no label map for image {image} (looked for '{stem}' in {label_dir})"
        elif instance_by_stem is not None and instance is None:
            problem = f"no instance map for image {image} (looked for '{stem}' in {instance_dir})"
        used.add(stem)
        pairs.append(Pair(key, image, label, instance, problem))
    for stem, label in label_by_stem.items():
        if stem not in used:
            pairs.append(Pair(_relative_key(label, label_dir), None, label, None,
                              f"label map {label} has no image"))
    return pairs


def _listing(name: str, split: str, rule: LabelRule, has_instances: bool,
             pairs: list[Pair], where: str) -> DatasetListing:
    if not pairs:
        raise DatasetLayoutError(f"no {name} examples found in {where}: check --root/--split "
                                 "or the folder names.")
    return DatasetListing(name, split, rule, has_instances, tuple(pairs))


def list_cityscapes(root: str | os.PathLike, split: str) -> DatasetListing:
    root = Path(root)
    image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes image")
    label_dir = _require_dir(root / "gtFine" / split, "Cityscapes gtFine")
    images = _files(image_dir, (".png",), "*_leftImg8bit.png")
    labels = _files(label_dir, (".png",), "*_gtFine_labelIds.png")
    instances = _files(label_dir, (".png",), "*_gtFine_instanceIds.png")
    pairs = _pair_by_stem(
        images, labels, instances, root, label_dir, label_dir,
        image_stem=lambda p: p.name[: -len("_leftImg8bit.png")],
        map_stem=lambda p: p.name.rsplit("_gtFine_", 1)[0],
    )
    # Labels and instances share a folder: pair each with its own kind only.
    return _listing("cityscapes", split, LabelRule(35), True, pairs, str(image_dir))


ADE20K_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val"}


def list_ade20k(root: str | os.PathLike, split: str) -> DatasetListing:
    root = _require_dir(Path(root), "ADE20K root")
    if split not in ADE20K_SPLITS:
        raise DatasetLayoutError(f"ADE20K split {split!r} is unknown: expected train or val.")
    tag = ADE20K_SPLITS[split]
    images = _files(root, (".jpg",), f"ADE_{tag}_*.jpg")
    labels = _files(root, (".png",), f"ADE_{tag}_*.png")
    pairs = _pair_by_stem(images, labels, None, root, root, None)
    return _listing("ade20k", split, LabelRule(151), False, pairs, str(root))


def list_coco_stuff(root: str | os.PathLike, split: str,
                    use_instances: bool = True) -> DatasetListing:
    root = Path(root)
    image_dir = _require_dir(root / f"{split}_img", "COCO-Stuff image")
    label_dir = _require_dir(root / f"{split}_label", "COCO-Stuff label")
    instance_dir = _require_dir(root / f"{split}_inst", "COCO-Stuff instance") \
        if use_instances else None
    images = _files(image_dir, IMAGE_EXTENSIONS)
    labels = _files(label_dir, MAP_EXTENSIONS)
    instances = _files(instance_dir, MAP_EXTENSIONS) if instance_dir else None
    pairs = _pair_by_stem(images, labels, instances, root, label_dir, instance_dir)
    return _listing("coco_stuff", split, LabelRule(182, 255), use_instances, pairs,
                    str(image_dir))


def list_folders(images: str | os.PathLike, labels: str | os.PathLike,
                 num_classes: int, instances: str | os.PathLike | None = None,
                 dontcare_label: int | None = None, split: str = "train") -> DatasetListing:
    if num_classes < 1:
        raise DatasetLayoutError(f"--num-classes {num_classes}: expected a positive count.")
    if dontcare_label is not None and 0 <= dontcare_label < num_classes:
        raise DatasetLayoutError(
            f"--dontcare-label {dontcare_label} is also a class id (0..{num_classes - 1}).")
    image_dir = _require_dir(Path(images), "image")
    label_dir = _require_dir(Path(labels), "label")
    instance_dir = _require_dir(Path(instances), "instance") if instances else None
    pairs = _pair_by_stem(
        _files(image_dir, IMAGE_EXTENSIONS), _files(label_dir, MAP_EXTENSIONS),
        _files(instance_dir, MAP_EXTENSIONS) if instance_dir else None,
        image_dir, label_dir, instance_dir,
    )
    return _listing("folders", split, LabelRule(num_classes, dontcare_label),
                    instance_dir is not None, pairs, str(image_dir))


DATASETS = ("cityscapes", "ade20k", "coco_stuff", "folders")
