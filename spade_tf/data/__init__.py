"""The TFRecord schema, dataset manifests and the tf.data input pipeline."""

from spade_tf.data.manifest import DataError, Manifest, read_manifest
from spade_tf.data.pipeline import explain_data_errors, load_dataset, make_input_fn
from spade_tf.data.schema import encode_example, parse_example

__all__ = [
    "DataError",
    "Manifest",
    "encode_example",
    "explain_data_errors",
    "load_dataset",
    "make_input_fn",
    "parse_example",
    "read_manifest",
]
