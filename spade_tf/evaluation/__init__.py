"""Evaluation of generated images: FID, KID, segmentation mIoU, synthetic mIoU.

Importing this package loads numpy-only modules (``tfrecords_tools.synthetic`` imports
the synthetic class table from here and stays light). The modules that need TensorFlow
or PyTorch are imported by name:

- ``spade_tf.evaluation.inception``: ``load_inception(path)``, ``extract_features(...)``;
- ``spade_tf.evaluation.segmentation``: ``Segmenter(path)``, ``read_label_mapping(path)``;
- ``spade_tf.evaluation.evaluate``: ``evaluate_fid``, ``evaluate_segmentation``,
  ``evaluate_synthetic`` over image folders;
- ``spade_tf.evaluation.generate``: ``generate_images`` (model folder + TFRecords ->
  ``generated/``, ``real/``, ``labels/`` PNG folders);
- the ``spade-eval`` command: :mod:`spade_cli.evaluate`.

See docs/evaluation.md.
"""

from spade_tf.evaluation.confusion import ConfusionMatrix, SegmentationScores
from spade_tf.evaluation.errors import EvaluationError
from spade_tf.evaluation.frechet import feature_statistics, frechet_distance
from spade_tf.evaluation.kid import KernelDistance, kernel_inception_distance
from spade_tf.evaluation.synthetic import classify_colors, synthetic_miou, synthetic_scores

__all__ = [
    "ConfusionMatrix",
    "EvaluationError",
    "KernelDistance",
    "SegmentationScores",
    "classify_colors",
    "feature_statistics",
    "frechet_distance",
    "kernel_inception_distance",
    "synthetic_miou",
    "synthetic_scores",
]
