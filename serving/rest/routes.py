"""The REST API's routes, without sockets: ``RestApi.handle(method, path, body)`` answers
one request with (HTTP status, JSON), as TF Serving's ``http_rest_api_handler.cc`` does."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import unquote

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.metrics import observed
from serving.model_manager import ModelManager, RequestError, ServableVersion
from serving.rest.codes import error_json, http_status
from serving.rest.codes import invalid as _invalid
from serving.rest.json_request import parse_json, request_tensors, signature_name_of
from serving.rest.json_response import response_json
from spade_tf import signatures as sig

log = logging.getLogger(__name__)

# TF Serving's regexes (kHTTPRestApiHandlerPathRegex, kPredictionApiGegex,
# kModelStatusApiRegex), matched against the whole path. RE2's \d is ASCII only.
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?", re.IGNORECASE)



# -- status and metadata -----------------------------------------------------------------


def _proto_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def model_status_json(manager: ModelManager, spec: model_pb2.ModelSpec) -> str:
    """GetModelStatusResponse as TF Serving's REST API prints it (every field, every
    version with a ``status``; int64 versions as strings, enums by name)."""
    states = manager.states(spec)
    if not states:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Could not find any versions of model {spec.name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state in sorted(states.items(), reverse=True):
        entry = response.model_version_status.add(version=version, state=state.state)
        entry.status.SetInParent()  # TF Serving always sets it: OK and "" when healthy
        if state.error:
            entry.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
            entry.status.error_message = state.error
    return json.dumps(_proto_json(response), indent=1)


def model_metadata_json(servable: ServableVersion) -> str:
    """GetModelMetadata's answer as TF Serving's REST API prints it: proto field names,
    every field, the SignatureDefMap unpacked under ``metadata.signature_def``."""
    spec = model_pb2.ModelSpec(name=servable.model_name)
    spec.version.value = servable.version
    document = {"model_spec": _proto_json(spec),
                "metadata": {sig.SIGNATURE_DEF_FIELD: _proto_json(servable.signature_def_map())}}
    return json.dumps(document, indent=1)


# -- the API, without sockets ------------------------------------------------------------


def is_prediction(method: str, path: str) -> bool:
    """Whether a request runs the model (and so waits for an inference slot)."""
    match = _PREDICT_PATH.fullmatch(path) if method == "POST" else None
    return match is not None and match.group(4) == "predict"


class RestApi:
    """Answers one REST request: ``handle(method, path, body) -> (HTTP status, JSON)``."""

    def __init__(self, manager: ModelManager, metrics=None):
        self.manager = manager  # a ModelManager or a ModelRegistry: the same lookups
        self.metrics = metrics  # a serving.metrics.ServingMetrics, or None

    def handle(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        try:
            return 200, self._route(method, path, body).encode()
        except RequestError as error:
            return http_status(error.code), error_json(error.message)
        except Exception as error:  # one request's bug must not take the server down
            log.exception("REST request %s %s failed", method, path)
            return 500, error_json(f"{type(error).__name__}: {error}")

    def _route(self, method: str, path: str, body: bytes) -> str:
        malformed = _invalid(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICT_PATH.fullmatch(path)
            if match is None:
                raise malformed
            spec = _model_spec(*match.groups()[:3])
            verb = match.group(4)
            if verb == "predict":
                return self._predict(spec, body)
            if verb in ("classify", "regress"):
                raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"{verb} is not supported by this server: its signatures "
                                   "are predict signatures (use :predict)")
            raise malformed  # TF Serving compares the method case-sensitively
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match is None:
                raise malformed
            spec = _model_spec(*match.groups()[:3])
            if not spec.name:
                raise _invalid("Missing model name in request.")
            if match.group(4) == "metadata":  # case-sensitive too: else the status
                return model_metadata_json(self.manager.servable(spec))
            return model_status_json(self.manager, spec)
        raise malformed

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        doc = parse_json(body)
        signature_name = signature_name_of(doc)
        with observed(self.metrics, spec.name, signature_name or sig.DEFAULT_SIGNATURE, "REST"):
            return self._run(spec, doc, signature_name)

    def _run(self, spec: model_pb2.ModelSpec, doc: dict, signature_name: str) -> str:
        servable = self.manager.servable(spec)  # kept across a concurrent swap
        name = signature_name or sig.DEFAULT_SIGNATURE
        signature = servable.signature_defs.get(name)
        if signature is None:
            servable.predict(name, {})  # raises the gRPC server's refusal, word for word
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{name}" not found')
        request_format, tensors = request_tensors(doc, signature.inputs)
        _, outputs = servable.predict(name, tensors)
        return response_json(outputs, request_format)


def _model_spec(name: str | None, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """http_rest_api_util.cc's ParseModelInfo and FillModelSpecWithNameVersionAndLabel."""
    spec = model_pb2.ModelSpec(name=unquote(name) if name else "")
    if version:
        number = int(version)
        if number >= 1 << 63:
            raise _invalid(f"Failed to convert version: {version} to numeric.")
        spec.version.value = number
    if label:
        spec.version_label = unquote(label)
    return spec

