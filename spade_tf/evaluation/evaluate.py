"""The metrics over image folders that ``spade-eval fid / segmentation / synthetic`` report."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from spade_tf.evaluation.confusion import ConfusionMatrix, SegmentationScores
from spade_tf.evaluation.errors import EvaluationError
from spade_tf.evaluation.frechet import feature_statistics, frechet_distance
from spade_tf.evaluation.images import (
    LABEL_EXTENSIONS,
    list_images,
    pair_by_stem,
    read_image,
    read_label_map,
    same_size_batches,
)
from spade_tf.evaluation.kid import kernel_inception_distance
from spade_tf.evaluation.synthetic import synthetic_confusion, update_synthetic_confusion

# progress(stage, done, total): "real" / "generated" features, or "images" scored.
Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True)
class FIDResult:
    fid: float
    kid_mean: float
    kid_std: float | None  # None: one subset, no spread
    kid_subset_size: int
    kid_num_subsets: int
    num_real: int
    num_generated: int
    feature_dim: int
    inception: str
    inception_kind: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SegmentationResult:
    scores: SegmentationScores
    num_images: int

    def to_dict(self) -> dict:
        return {"num_images": self.num_images, **self.scores.to_dict()}


def folder_features(network, folder: str | os.PathLike, what: str, batch_size: int,
                    progress: Progress | None = None) -> np.ndarray:
    """Inception features of every image under ``folder``, float64 ``[N, D]``."""
    from spade_tf.evaluation.inception import extract_features

    files = list_images(folder, what)
    report = (lambda done, total: progress(what, done, total)) if progress else None
    return extract_features(network, (read_image(path) for path in files), batch_size,
                            total=len(files), progress=report)


def evaluate_fid(real_dir: str | os.PathLike, generated_dir: str | os.PathLike, inception,
                 batch_size: int = 50, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 seed: int = 0, progress: Progress | None = None) -> FIDResult:
    """FID and KID between two image folders; ``inception`` is a file path or a network
    from ``load_inception``."""
    from spade_tf.evaluation.inception import InceptionFeatures, load_inception

    network = inception if isinstance(inception, InceptionFeatures) else load_inception(inception)
    real = folder_features(network, real_dir, "real", batch_size, progress)
    generated = folder_features(network, generated_dir, "generated", batch_size, progress)
    fid = frechet_distance(*feature_statistics(real), *feature_statistics(generated))
    kid = kernel_inception_distance(real, generated, kid_subsets, kid_subset_size, seed)
    return FIDResult(fid=fid, kid_mean=kid.mean, kid_std=kid.std, kid_subset_size=kid.subset_size,
                     kid_num_subsets=kid.num_subsets, num_real=len(real),
                     num_generated=len(generated), feature_dim=int(real.shape[1]),
                     inception=str(network.path), inception_kind=network.kind)


def _paired_images(generated_dir, labels_dir) -> list[tuple[str, Path, Path]]:
    return pair_by_stem(list_images(generated_dir, "generated"),
                        list_images(labels_dir, "label", LABEL_EXTENSIONS))


def _read_pairs(pairs: list[tuple[str, Path, Path]]) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, [H, W, 4] int32 = RGB + label)``: one array so batches keep pairs together."""
    for name, image_path, label_path in pairs:
        image, label = read_image(image_path), read_label_map(label_path)
        if image.shape[:2] != label.shape:
            raise EvaluationError(
                f"{image_path} is {image.shape[1]}x{image.shape[0]} but its label map "
                f"{label_path} is {label.shape[1]}x{label.shape[0]}; evaluate at the generation "
                "size (spade-eval generate writes both at the model's size).")
        yield name, np.concatenate([image.astype(np.int32), label[..., None]], axis=-1)


def _score_pairs(pairs, confusion: ConfusionMatrix, score_batch, batch_size: int,
                 progress: Progress | None) -> SegmentationResult:
    done = 0
    for _, batch in same_size_batches(_read_pairs(pairs), batch_size):
        score_batch(batch[..., :3].astype(np.uint8), batch[..., 3])
        done += batch.shape[0]
        if progress is not None:
            progress("images", done, len(pairs))
    return SegmentationResult(confusion.scores(), len(pairs))


def evaluate_segmentation(generated_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                          segmenter, ignore_id: int = 255, num_classes: int | None = None,
                          label_mapping: dict[int, int] | None = None,
                          input_range: str = "0-255", batch_size: int = 8,
                          progress: Progress | None = None) -> SegmentationResult:
    """mIoU and pixel accuracy of a segmenter's predictions on the generated images against
    their label maps; ``segmenter`` is a SavedModel path or a ``Segmenter``."""
    from spade_tf.evaluation.segmentation import Segmenter, apply_label_mapping

    network = segmenter if isinstance(segmenter, Segmenter) else Segmenter(segmenter, input_range)
    pairs = _paired_images(generated_dir, labels_dir)
    confusion = ConfusionMatrix(num_classes, ignore_id)

    def score_batch(images: np.ndarray, labels: np.ndarray) -> None:
        if label_mapping is not None:
            labels = apply_label_mapping(labels, label_mapping, ignore_id)
        confusion.update(labels, network(images, labels.shape[1:3]))

    return _score_pairs(pairs, confusion, score_batch, batch_size, progress)


def evaluate_synthetic(generated_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                       batch_size: int = 16,
                       progress: Progress | None = None) -> SegmentationResult:
    """Synthetic mIoU and pixel accuracy: each generated pixel's class read from its colour."""
    pairs = _paired_images(generated_dir, labels_dir)
    confusion = synthetic_confusion()

    def score_batch(images: np.ndarray, labels: np.ndarray) -> None:
        update_synthetic_confusion(confusion, images, labels)

    return _score_pairs(pairs, confusion, score_batch, batch_size, progress)
