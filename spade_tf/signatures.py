"""The serving contract: signature and tensor names, ports and message limits, shared by
export, client and server.

Every exported model has ``serving_default``, ``synthesize_png`` and ``model_info``; VAE
models have five more. Inputs are compact integer maps (or PNGs of them), never one-hot
tensors; images come back as uint8 (or PNG bytes).

=============================  =========================================  ====================
signature                      inputs                                     outputs
=============================  =========================================  ====================
``serving_default``            ``label_ids`` int32 [B, H, W]              ``image`` uint8
                               (+ ``instance_ids`` int32 [B, H, W])       [B, H, W, 3]
``synthesize_seeded``          as above + ``seed`` int64 [B]              ``image``
``synthesize_with_style``      as above + ``style_image`` uint8           ``image``
                               [B, h, w, 3]
``encode_style``               ``style_image`` uint8 [B, h, w, 3]         ``mean``,
                                                                          ``log_variance``
                                                                          float32 [B, latent]
``synthesize_png``             ``label_png_bytes`` string [B]             ``image_png_bytes``
                               (+ ``instance_png_bytes`` string [B])      string [B]
``synthesize_png_seeded``      as above + ``seed`` int64 [B]              ``image_png_bytes``
``synthesize_png_with_style``  as above + ``style_png_bytes`` string [B]  ``image_png_bytes``
``model_info``                 ``request`` int32 [N] (any values)         ``metadata_json``
                                                                          string []
=============================  =========================================  ====================

``H x W`` is the model's image size; instance inputs exist only for models that use
instance edges. For a VAE model the default signatures draw a random style. Label PNGs
are single-channel 8- or 16-bit grayscale PNGs of ids; style photos PNG or JPEG.
``model_info`` returns the export's ``spade_model.json`` (image size, classes with names
and colours, limits, signatures) as JSON text.
"""

from __future__ import annotations

import dataclasses

DEFAULT_SIGNATURE = "serving_default"
# The same three as PNG bytes in and out (light clients: a 512x512 map is ~3.5 KB as PNG,
# ~1.3 MB as JSON ints), and what the model is (size, classes), for clients and the painter.
PNG_SIGNATURE = "synthesize_png"
PNG_SEEDED_SIGNATURE = "synthesize_png_seeded"
PNG_STYLE_SIGNATURE = "synthesize_png_with_style"
MODEL_INFO_SIGNATURE = "model_info"
SEEDED_SIGNATURE = "synthesize_seeded"
STYLE_SIGNATURE = "synthesize_with_style"
ENCODE_SIGNATURE = "encode_style"

LABEL_IDS = "label_ids"
# "_bytes" aliases: TF Serving's REST API sends and returns them as {"b64": ...}.
LABEL_PNG = "label_png_bytes"
INSTANCE_PNG = "instance_png_bytes"
STYLE_PNG = "style_png_bytes"
IMAGE_PNG = "image_png_bytes"
MODEL_INFO_REQUEST = "request"
METADATA_JSON = "metadata_json"
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
# REST: seconds a request body may take to arrive (TF Serving's --rest_api_timeout_in_ms
# default), and predictions that may wait for a worker before the answer is UNAVAILABLE.
REST_BODY_TIMEOUT_SECONDS = 30.0
REST_MAX_QUEUED = 512
# gRPC send/receive limit on both sides and the largest input accepted (Python's default
# receive limit, 4 MiB, is smaller than one 1024x1024 request).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# The GetModelMetadata field that carries the signature definitions.
SIGNATURE_DEF_FIELD = "signature_def"

# Every input: dtype and shape (None: any size). Label PNGs are 8- or 16-bit grayscale.
INPUT_SPECS: dict[str, tuple[str, tuple[int | None, ...]]] = {
    LABEL_IDS: ("int32", (None, None, None)),
    INSTANCE_IDS: ("int32", (None, None, None)),
    SEED: ("int64", (None,)),
    STYLE_IMAGE: ("uint8", (None, None, None, 3)),
    LABEL_PNG: ("string", (None,)),
    INSTANCE_PNG: ("string", (None,)),
    STYLE_PNG: ("string", (None,)),
    MODEL_INFO_REQUEST: ("int32", (None,)),
}


@dataclasses.dataclass(frozen=True)
class Signature:
    """One signature of the contract: its inputs (the instance map's, when the model
    uses instance edges, comes right after the label map's) and whether only VAE models
    have it."""

    name: str
    inputs: tuple[str, ...]
    instance_input: str | None = None
    vae_only: bool = False


# The one table of signatures: export generates its functions from it, warm-up writes one
# request per row, clients and tests ask it for input names.
SIGNATURES: tuple[Signature, ...] = (
    Signature(DEFAULT_SIGNATURE, (LABEL_IDS,), INSTANCE_IDS),
    Signature(SEEDED_SIGNATURE, (LABEL_IDS, SEED), INSTANCE_IDS, vae_only=True),
    Signature(STYLE_SIGNATURE, (LABEL_IDS, STYLE_IMAGE), INSTANCE_IDS, vae_only=True),
    Signature(ENCODE_SIGNATURE, (STYLE_IMAGE,), vae_only=True),
    Signature(PNG_SIGNATURE, (LABEL_PNG,), INSTANCE_PNG),
    Signature(PNG_SEEDED_SIGNATURE, (LABEL_PNG, SEED), INSTANCE_PNG, vae_only=True),
    Signature(PNG_STYLE_SIGNATURE, (LABEL_PNG, STYLE_PNG), INSTANCE_PNG, vae_only=True),
    Signature(MODEL_INFO_SIGNATURE, (MODEL_INFO_REQUEST,)),
)
_BY_NAME = {signature.name: signature for signature in SIGNATURES}


def signature_names(use_vae: bool) -> list[str]:
    """The signatures an export of a model with or without a VAE encoder has, sorted."""
    return sorted(signature.name for signature in SIGNATURES if use_vae or not signature.vae_only)


def signature_inputs(signature: str, uses_instances: bool) -> tuple[str, ...]:
    """The input names of ``signature`` for a model with or without instance maps."""
    row = _BY_NAME[signature]
    if not uses_instances or row.instance_input is None:
        return row.inputs
    return (row.inputs[0], row.instance_input, *row.inputs[1:])
