"""The serving contract: signature and tensor names, ports and message limits, shared by
export, client and server.

Every exported model has the default signature; VAE models have three more. Inputs are
compact integer maps, never one-hot tensors; images come back as uint8.

=========================  ==========================================  ======================
signature                  inputs                                      outputs
=========================  ==========================================  ======================
``serving_default``        ``label_ids`` int32 [B, H, W]               ``image`` uint8
                           (+ ``instance_ids`` int32 [B, H, W])        [B, H, W, 3]
``synthesize_seeded``      as above + ``seed`` int64 [B]               ``image``
``synthesize_with_style``  as above + ``style_image`` uint8 [B, h, w, 3]  ``image``
``encode_style``           ``style_image`` uint8 [B, h, w, 3]           ``mean``, ``log_variance``
                                                                        float32 [B, latent]
=========================  ==========================================  ======================

``H x W`` is the model's image size; ``instance_ids`` exists only for models that use
instance edges. For a VAE model the default signature draws a random style.
"""

from __future__ import annotations

DEFAULT_SIGNATURE = "serving_default"
SEEDED_SIGNATURE = "synthesize_seeded"
STYLE_SIGNATURE = "synthesize_with_style"
ENCODE_SIGNATURE = "encode_style"

LABEL_IDS = "label_ids"
INSTANCE_IDS = "instance_ids"
SEED = "seed"
STYLE_IMAGE = "style_image"
IMAGE = "image"
MEAN = "mean"
LOG_VARIANCE = "log_variance"

# TF Serving's default ports (its Docker image): gRPC and REST.
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
DEFAULT_HOST = "127.0.0.1"
# gRPC send/receive limit on both sides and the largest input accepted (Python's default
# receive limit, 4 MiB, is smaller than one 1024x1024 request).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# The GetModelMetadata field that carries the signature definitions.
SIGNATURE_DEF_FIELD = "signature_def"

# Where TF Serving looks for warm-up requests inside a version folder.
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# Written beside the SavedModel: what the model expects (read by clients and the server).
SPADE_METADATA_FILE = "assets.extra/spade_model.json"


def signature_inputs(signature: str, uses_instances: bool) -> tuple[str, ...]:
    """The input names of ``signature`` for a model with or without instance maps."""
    maps = (LABEL_IDS, INSTANCE_IDS) if uses_instances else (LABEL_IDS,)
    return {
        DEFAULT_SIGNATURE: maps,
        SEEDED_SIGNATURE: (*maps, SEED),
        STYLE_SIGNATURE: (*maps, STYLE_IMAGE),
        ENCODE_SIGNATURE: (STYLE_IMAGE,),
    }[signature]
