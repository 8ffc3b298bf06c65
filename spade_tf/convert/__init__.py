"""Converting the reference implementation's PyTorch checkpoints (needs the [convert] extra)."""

from spade_tf.convert.checkpoint import ConversionError, load_state_dict
from spade_tf.convert.converter import convert_reference_checkpoints

__all__ = ["ConversionError", "convert_reference_checkpoints", "load_state_dict"]
