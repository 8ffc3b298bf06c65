"""Where each dataset layout keeps its files, and which label ids it may use.

Every layout lists ``Pair``s (photo, label map, optional instance map) by its own naming
rules, and partners that cannot be found become pairs with a ``problem`` so they are
reported with the rest. Label ids are stored as the dataset has them; the ``LabelRule``
says which are valid (``0..num_classes-1``, plus the don't-care id where there is one: its
``space``, a :class:`spade_tf.label_space.LabelSpace`).

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
from spade_tf.label_space import MAX_LABEL_ID, LabelSpace

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAP_EXTENSIONS = (".png",)
# Maps saved as JPEG are listed too, only to say why they cannot be used.
LOSSY_MAP_EXTENSIONS = (".jpg", ".jpeg")


class DatasetLayoutError(SpadeError, ValueError):
    """The folders do not look like the named dataset (nothing to convert)."""


@dataclasses.dataclass(frozen=True)
class LabelRule:
    # Its fields enter the conversion's fingerprint (convert._fingerprint): adding one
    # would make every earlier conversion look like another one.
    num_classes: int
    dontcare_label: int | None = None
    #: The dataset whose ids these are; empty when the user gave them (--num-classes).
    dataset: str = ""

    @property
    def space(self) -> LabelSpace:
        """The valid ids: classes 0..num_classes-1 and the don't-care id."""
        return LabelSpace(self.num_classes, self.dontcare_label)

    def fix_hint(self) -> str:
        """What to check when a map has ids outside the rule (only options that exist)."""
        if self.dataset:
            return f"check that it is a {self.dataset} label map of ids"
        return "check --num-classes / --dontcare-label or the label map"

    def describe(self) -> str:
        return self.space.allowed_text


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
    #: The folders the pairs were listed from (the output must stay outside them).
    sources: tuple[Path, ...] = ()


def _files(folder: Path, extensions: Iterable[str], pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.rglob(pattern)
                  if p.is_file() and p.suffix.lower() in extensions)


def _require_dir(folder: Path, what: str, hint: str = "") -> Path:
    if folder.exists() and not folder.is_dir():
        raise DatasetLayoutError(f"{what} folder {folder} is a file, not a folder.")
    if not folder.is_dir():
        raise DatasetLayoutError(f"{what} folder {folder} does not exist{hint}.")
    return folder


def _require_root(root: str | os.PathLike, name: str, holds: str) -> Path:
    """``--root`` itself, checked first so a wrong root is named as such."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetLayoutError(f"--root {root} is a file; expected the {name} folder that "
                                 f"holds {holds}.")
    if not root.is_dir():
        raise DatasetLayoutError(f"--root {root} does not exist; expected the {name} folder "
                                 f"that holds {holds}.")
    return root


def _split_hint(split: str, found: Iterable[str]) -> str:
    found = sorted(found)
    listed = f"; splits found: {', '.join(found)}" if found else ""
    return f" (--split {split}{listed})"


def _relative_key(path: Path, root: Path) -> str:
    return str(path.relative_to(root).with_suffix("")).replace(os.sep, "/")


def lossy_map_problem(path: Path, what: str = "label map") -> str:
    """Why a JPEG label or instance map is refused (said the way label_maps says it)."""
    return (f"the {what} {path} is a JPEG file: lossy compression changes ids at region "
            f"edges; save the {what}s as PNG")


def _pair_by_stem(images: list[Path], labels: list[Path], instances: list[Path] | None,
                  root: Path, label_dir: Path, instance_dir: Path | None,
                  image_stem=lambda p: p.stem, map_stem=lambda p: p.stem,
                  lossy_labels: Iterable[Path] = (),
                  lossy_instances: Iterable[Path] = ()) -> list[Pair]:
    """Pair files whose (transformed) stems agree; unmatched files become problem pairs.

    ``lossy_*`` are JPEG maps: never used, but named when they are an image's only map.
    """
    label_by_stem = {map_stem(p): p for p in labels}
    instance_by_stem = {map_stem(p): p for p in instances} if instances is not None else None
    lossy_label_by_stem = {map_stem(p): p for p in lossy_labels}
    lossy_instance_by_stem = {map_stem(p): p for p in lossy_instances}
    pairs, used = [], set()
    for image in images:
        stem = image_stem(image)
        key = _relative_key(image, root)
        label = label_by_stem.get(stem)
        instance = instance_by_stem.get(stem) if instance_by_stem is not None else None
        problem = None
        if label is None and stem in lossy_label_by_stem:
            problem = lossy_map_problem(lossy_label_by_stem[stem])
        elif label is None:
            problem = f"no label map for image {image} (looked for '{stem}' in {label_dir})"
        elif instance_by_stem is not None and instance is None:
            if stem in lossy_instance_by_stem:
                problem = lossy_map_problem(lossy_instance_by_stem[stem], "instance map")
            else:
                problem = (f"no instance map for image {image} (looked for '{stem}' in "
                           f"{instance_dir})")
        used.add(stem)
        pairs.append(Pair(key, image, label, instance, problem))
    for stem, label in label_by_stem.items():
        if stem not in used:
            pairs.append(Pair(_relative_key(label, label_dir), None, label, None,
                              f"label map {label} has no image"))
    for stem, label in lossy_label_by_stem.items():
        if stem not in used and stem not in label_by_stem:
            pairs.append(Pair(_relative_key(label, label_dir), None, label, None,
                              f"label map {label} has no image (and it is a JPEG file: "
                              "save the label maps as PNG)"))
    return pairs


def _check_maps_found(images: list[Path], maps: list[Path], lossy: list[Path], folder: Path,
                      what: str = "label map") -> None:
    """Cheap checks before decoding anything: a folder of JPEG maps, or of no maps."""
    if not images or maps:
        return
    if lossy:
        raise DatasetLayoutError(
            f"the {what}s in {folder} are JPEG files ({len(lossy)}, e.g. {lossy[0].name}): "
            f"lossy compression changes ids at region edges; save the {what}s as PNG.")
    raise DatasetLayoutError(f"no {what}s (.png) found in {folder} for the {len(images)} "
                             "images: check the folder.")


def _listing(name: str, split: str, rule: LabelRule, has_instances: bool,
             pairs: list[Pair], where: str, sources: Iterable[Path],
             hint: str = "check --root/--split or the folder names") -> DatasetListing:
    if not pairs:
        raise DatasetLayoutError(f"no {name} examples found in {where}: {hint}.")
    return DatasetListing(name, split, rule, has_instances, tuple(pairs), tuple(sources))


CITYSCAPES_HOLDS = "leftImg8bit/ and gtFine/"


def list_cityscapes(root: str | os.PathLike, split: str) -> DatasetListing:
    root = _require_root(root, "Cityscapes", CITYSCAPES_HOLDS)
    splits = (root / "leftImg8bit").iterdir() if (root / "leftImg8bit").is_dir() else ()
    hint = _split_hint(split, (p.name for p in splits if p.is_dir())) \
        if (root / "leftImg8bit").is_dir() else f": --root should hold {CITYSCAPES_HOLDS}"
    image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes image", hint)
    label_dir = _require_dir(root / "gtFine" / split, "Cityscapes gtFine")
    images = _files(image_dir, (".png",), "*_leftImg8bit.png")
    labels = _files(label_dir, (".png",), "*_gtFine_labelIds.png")
    lossy = _files(label_dir, LOSSY_MAP_EXTENSIONS, "*_gtFine_labelIds.*")
    instances = _files(label_dir, (".png",), "*_gtFine_instanceIds.png")
    lossy_instances = _files(label_dir, LOSSY_MAP_EXTENSIONS, "*_gtFine_instanceIds.*")
    _check_maps_found(images, labels, lossy, label_dir)
    pairs = _pair_by_stem(
        images, labels, instances, root, label_dir, label_dir,
        image_stem=lambda p: p.name[: -len("_leftImg8bit.png")],
        map_stem=lambda p: p.name.rsplit("_gtFine_", 1)[0],
        lossy_labels=lossy, lossy_instances=lossy_instances,
    )
    # Labels and instances share a folder: pair each with its own kind only.
    return _listing("cityscapes", split, LabelRule(35, dataset="Cityscapes"), True, pairs,
                    str(image_dir), [root])


ADE20K_SPLITS = {"train": "train", "training": "train", "val": "val", "validation": "val"}


def _under_annotations(path: Path, root: Path) -> bool:
    # ADE20K photos and annotations share names; only their folders tell them apart.
    return any(part.lower().startswith("annotation")
               for part in path.relative_to(root).parts[:-1])


def list_ade20k(root: str | os.PathLike, split: str) -> DatasetListing:
    root = _require_root(root, "ADE20K (ADEChallengeData2016)", "images/ and annotations/")
    if split not in ADE20K_SPLITS:
        raise DatasetLayoutError(f"ADE20K split {split!r} is unknown: expected train or val.")
    tag = ADE20K_SPLITS[split]
    jpegs = _files(root, LOSSY_MAP_EXTENSIONS, f"ADE_{tag}_*")
    images = [p for p in jpegs if not _under_annotations(p, root)]
    lossy = [p for p in jpegs if _under_annotations(p, root)]
    labels = _files(root, (".png",), f"ADE_{tag}_*.png")
    _check_maps_found(images, labels, lossy, root)
    pairs = _pair_by_stem(images, labels, None, root, root, None, lossy_labels=lossy)
    return _listing("ade20k", split, LabelRule(151, dataset="ADE20K"), False, pairs,
                    str(root), [root])


def _maps_beside(images: list[Path], label_dir: Path, instance_dir: Path | None):
    """(label maps, JPEG label maps, instance maps or None, JPEG instance maps) of a layout
    whose maps sit in their own folders; an error when the photos' maps are missing."""
    labels = _files(label_dir, MAP_EXTENSIONS)
    lossy = _files(label_dir, LOSSY_MAP_EXTENSIONS)
    _check_maps_found(images, labels, lossy, label_dir)
    if instance_dir is None:
        return labels, lossy, None, ()
    instances = _files(instance_dir, MAP_EXTENSIONS)
    lossy_instances = _files(instance_dir, LOSSY_MAP_EXTENSIONS)
    _check_maps_found(images, instances, lossy_instances, instance_dir, "instance map")
    return labels, lossy, instances, lossy_instances


def list_coco_stuff(root: str | os.PathLike, split: str,
                    use_instances: bool = True) -> DatasetListing:
    root = _require_root(root, "COCO-Stuff", "<split>_img/, <split>_label/ and <split>_inst/")
    hint = _split_hint(split, (p.name[: -len("_img")] for p in root.glob("*_img")
                               if p.is_dir()))
    image_dir = _require_dir(root / f"{split}_img", "COCO-Stuff image", hint)
    label_dir = _require_dir(root / f"{split}_label", "COCO-Stuff label")
    instance_dir = _require_dir(
        root / f"{split}_inst", "COCO-Stuff instance",
        " (leave the instance maps out with --no-instances)") if use_instances else None
    images = _files(image_dir, IMAGE_EXTENSIONS)
    labels, lossy, instances, lossy_instances = _maps_beside(images, label_dir, instance_dir)
    pairs = _pair_by_stem(images, labels, instances, root, label_dir, instance_dir,
                          lossy_labels=lossy, lossy_instances=lossy_instances)
    return _listing("coco_stuff", split, LabelRule(182, 255, dataset="COCO-Stuff"),
                    use_instances, pairs,
                    str(image_dir), [root])


def list_folders(images: str | os.PathLike, labels: str | os.PathLike,
                 num_classes: int, instances: str | os.PathLike | None = None,
                 dontcare_label: int | None = None, split: str = "train") -> DatasetListing:
    if num_classes < 1:
        raise DatasetLayoutError(f"--num-classes {num_classes}: expected a positive count.")
    classes = LabelSpace(num_classes)
    if dontcare_label is not None and classes.is_class_id(dontcare_label):
        raise DatasetLayoutError(
            f"--dontcare-label {dontcare_label} is also a class id ({classes.class_ids_text}).")
    if dontcare_label is not None and not 0 <= dontcare_label <= MAX_LABEL_ID:
        raise DatasetLayoutError(f"--dontcare-label {dontcare_label}: expected an id in "
                                 f"0..{MAX_LABEL_ID} (e.g. 255).")
    image_dir = _require_dir(Path(images), "--images")
    label_dir = _require_dir(Path(labels), "--labels")
    instance_dir = _require_dir(Path(instances), "--instances") if instances else None
    # One folder for both would pair every PNG photo with itself.
    if label_dir.resolve() == image_dir.resolve():
        raise DatasetLayoutError(f"--images and --labels are the same folder {image_dir}: "
                                 "keep the photos and the label maps in separate folders.")
    image_files = _files(image_dir, IMAGE_EXTENSIONS)
    label_files, lossy, instance_files, lossy_instances = _maps_beside(image_files, label_dir,
                                                                       instance_dir)
    pairs = _pair_by_stem(image_files, label_files, instance_files, image_dir, label_dir,
                          instance_dir, lossy_labels=lossy, lossy_instances=lossy_instances)
    sources = [d for d in (image_dir, label_dir, instance_dir) if d is not None]
    return _listing("folders", split, LabelRule(num_classes, dontcare_label),
                    instance_dir is not None, pairs, str(image_dir), sources,
                    hint="check --images (photos as .jpg or .png) and --labels (label maps "
                         "as .png, with the same file names)")


DATASETS = ("cityscapes", "ade20k", "coco_stuff", "folders")
