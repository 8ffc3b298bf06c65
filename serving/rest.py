"""TF Serving's REST API over a :class:`ModelManager`, and the painter's static files.

Routes (as TensorFlow Serving's ``http_rest_api_util.cc`` matches them: the whole path,
case-insensitively, no trailing slash):

- ``POST /v1/models/NAME[/versions/N | /labels/L]:predict``: ``{"signature_name"?,
  "instances": [...]}`` (row format) answers ``{"predictions": [...]}``; ``{"inputs": ...}``
  (columnar format) answers ``{"outputs": ...}``. ``:classify`` and ``:regress`` answer
  501 (this server's signatures are predict signatures, as over gRPC).
- ``GET /v1/models/NAME[/versions/N | /labels/L]``: GetModelStatusResponse as JSON;
  ``.../metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``.
- Other ``/v1/...`` paths and methods: 400 ``Malformed request: METHOD PATH``, as TF
  Serving answers; other paths: the files of ``static_dir`` (``index.html`` at ``/``) for
  GET and HEAD when one is given, else 404.

Every error is ``{"error": "<message>"}`` with the HTTP code TF Serving maps from the
status code (its ``ToHTTPStatusCode``); the messages of refused predictions are the
gRPC server's (:class:`RequestError` from :mod:`serving.model_manager`). JSON values are
converted with the rules of TF Serving's ``util/json_tensor.cc``; see
:func:`request_tensors` and :func:`response_json`, which need no sockets.

    rest = RestServer(server.manager, port=8501, static_dir=Path("painter"))
    rest.start()
    ...
    rest.stop()
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.model_manager import ModelManager, RequestError, ServableVersion
from spade_tf import signatures as sig
from spade_tf.errors import SpadeError

log = logging.getLogger(__name__)

# Large enough for a batch of 1024x1024 label (and instance) maps written as JSON ints.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_WORKERS = 8
# A connection idle for this long (between or inside requests) is closed.
IDLE_TIMEOUT_SECONDS = 60.0
# After refusing a body unread, its bytes are read and dropped for at most this long.
_DRAIN_SECONDS = 2.0

ROW, COLUMNAR = "row", "columnar"  # the two request formats, and the answers they get

# TF Serving's regexes (kHTTPRestApiHandlerPathRegex, kPredictionApiGegex,
# kModelStatusApiRegex), matched against the whole path. RE2's \d is ASCII only.
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
_PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?", re.IGNORECASE)

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TensorFlow's DataTypeString names, which TF Serving's messages use.
_TYPE_NAMES = {
    types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double", types_pb2.DT_HALF: "half",
    types_pb2.DT_BFLOAT16: "bfloat16", types_pb2.DT_INT8: "int8", types_pb2.DT_INT16: "int16",
    types_pb2.DT_INT32: "int32", types_pb2.DT_INT64: "int64", types_pb2.DT_UINT8: "uint8",
    types_pb2.DT_UINT16: "uint16", types_pb2.DT_UINT32: "uint32",
    types_pb2.DT_UINT64: "uint64", types_pb2.DT_BOOL: "bool", types_pb2.DT_STRING: "string",
}
# numpy type, mantissa bits (the largest exact integer), largest finite value
_FLOATS = {types_pb2.DT_FLOAT: (np.float32, 24, float(np.finfo(np.float32).max)),
           types_pb2.DT_DOUBLE: (np.float64, 53, float(np.finfo(np.float64).max))}
# json_tensor.cc takes these from JSON ints (rapidjson's IsInt/IsInt64/IsUint/IsUint64).
_INTEGERS = {
    types_pb2.DT_INT8: np.int8, types_pb2.DT_INT16: np.int16, types_pb2.DT_INT32: np.int32,
    types_pb2.DT_UINT8: np.uint8, types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32, types_pb2.DT_UINT64: np.uint64,
}
# The output dtypes json_tensor.cc can write (AddSingleValueAndAdvance).
_WRITABLE_INTEGERS = {"int8", "int16", "int32", "uint8", "int64", "uint32", "uint64"}
_UINT8_TEXTS = [str(value) for value in range(256)]
_MAX_RANK = 254  # TensorShape's limit
_EXCERPT_CHARS = 200  # JSON values quoted in messages are cut to this length
_B64_KEY = "b64"
_BYTES_SUFFIX = "_bytes"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json",
    ".map": "application/json", ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
    ".ico": "image/x-icon", ".wasm": "application/wasm", ".woff2": "font/woff2",
    ".woff": "font/woff",
}
_CORS_METHODS = "POST, GET"  # TF Serving's AddCORSHeaders
_BODY_METHODS = ("POST", "PUT", "PATCH")  # whose bodies are read on /v1/ paths
_CORS_HEADERS = "Content-Type"


class RestServerError(SpadeError, RuntimeError):
    """The REST server cannot start (address taken, bad static folder, started twice)."""


def _invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status TF Serving answers a gRPC status code with."""
    return _HTTP_STATUS.get(code, 500)


def error_json(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "<message>"}``."""
    return json.dumps({"error": message}).encode()


# -- JSON values in messages -------------------------------------------------------------


def _decimal_text(value: float, single: bool) -> str:
    """A float as json_tensor.cc's WriteDecimal writes it: six significant digits when
    that reads back to the same value, else full precision; ``.0`` on whole numbers;
    ``NaN``, ``Infinity`` and ``-Infinity`` for the non-finite."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:.6g}"
    same = (np.float32(float(text)) == np.float32(value)) if single else float(text) == value
    if not same:
        text = f"{value:.{9 if single else 17}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _json_pieces(value) -> Iterator[str]:
    if isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + json.dumps(key) + ":"
            yield from _json_pieces(item)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _json_pieces(item)
        yield "]"
    elif isinstance(value, float):
        yield _decimal_text(value, single=False)
    else:
        yield json.dumps(value)


def _excerpt(value) -> str:
    """A JSON value for a message (json_tensor.cc's JsonValueToString), cut short."""
    parts, size = [], 0
    for piece in _json_pieces(value):
        parts.append(piece)
        size += len(piece)
        if size > _EXCERPT_CHARS:
            return "".join(parts)[:_EXCERPT_CHARS] + "..."
    return "".join(parts)


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _type_name(dtype: int) -> str:
    if dtype in _TYPE_NAMES:
        return _TYPE_NAMES[dtype]
    try:
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    except ValueError:
        return f"dtype enum {dtype}"


def _type_error(value, dtype: int) -> RequestError:
    return _invalid(f"JSON Value: {_excerpt(value)} Type: {_json_type(value)} is not of "
                    f"expected type: {_type_name(dtype)}")


def _lossy_error(value, target: str) -> RequestError:
    return _invalid(f"Cannot convert JSON value: {_excerpt(value)} to {target} without loss "
                    "of precision.")


def _format_error(value, text: str) -> RequestError:
    return _invalid(f"JSON Value: {_excerpt(value)} {text}")


def _status_text(error: RequestError) -> str:
    """absl::Status::ToString() of a refusal, as TF Serving nests it in messages."""
    return f"{error.code.name}: {error.message}"


# -- request JSON -> tensors -------------------------------------------------------------


def parse_json(body: bytes | str) -> dict:
    """The request body as a JSON object (json_tensor.cc's ParseJson).

    NaN, Infinity and -Infinity are accepted, as TF Serving parses with
    ``kParseNanAndInfFlag``; numbers too large for a double are refused, as rapidjson does.
    """
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise _invalid(f"JSON Parse error: Invalid encoding in string. at offset: "
                           f"{error.start}") from None
    if not body or body.isspace():
        raise _invalid("JSON Parse error: The document is empty")

    def parse_float(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError("Number too big to be stored in double")
        return value

    try:
        doc = json.loads(body, parse_float=parse_float)
    except json.JSONDecodeError as error:
        raise _invalid(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except (ValueError, RecursionError) as error:
        raise _invalid(f"JSON Parse error: {error}") from None
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def signature_name_of(doc: Mapping) -> str:
    """The optional ``signature_name`` ("" when absent: the default signature)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise _format_error(doc, "not formatted correctly. 'signature_name' key must be a "
                                 "string value.")
    return name


def _dtype_of(info) -> int:
    """A DataType enum from a TensorInfo, a tf.DType, a numpy dtype or an enum."""
    if isinstance(info, meta_graph_pb2.TensorInfo):
        return info.dtype
    if isinstance(info, int):
        return info
    return tf.dtypes.as_dtype(info).as_datatype_enum


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(_B64_KEY), str)


def _decode_b64(value) -> bytes:
    if not _is_b64(value):
        raise _format_error(value, "not formatted correctly for base64 data")
    text = value[_B64_KEY]
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Unable to base64 decode") from None


def _dense_shape(value) -> list[int]:
    """json_tensor.cc's GetDenseTensorShape: the sizes along the first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > _MAX_RANK:
            raise _invalid(f"Encountered lists nested deeper than {_MAX_RANK} levels")
        if not value:
            break
        value = value[0]
    return shape


class _Tensor:
    """One JSON value -> the values of a dense tensor, checked as json_tensor.cc checks them
    (FillTensorProto, AddValueToTensor)."""

    def __init__(self, dtype: int):
        self.dtype = dtype
        self.values: list = []
        self.shape: list[int] = []
        self._ints = _INTEGERS.get(dtype)

    def add(self, value) -> None:
        start = len(self.values)
        self.shape = _dense_shape(value)
        self._fill(value, 0)
        if self._ints is not None:
            self._check_range(self.values[start:])

    def _check_range(self, values: list) -> None:
        # json_tensor.cc refuses ints outside int32 (rapidjson's IsInt) for the small types
        # and lets uint8/int8/int16 wrap around; this server refuses them all.
        info = np.iinfo(self._ints)
        try:
            wide = np.array(values, dtype=np.uint64 if info.min == 0 else np.int64)
            inside = not wide.size or (wide.min() >= info.min and wide.max() <= info.max)
        except OverflowError:
            inside = False
        if not inside:
            raise _type_error(next(value for value in values
                                   if not info.min <= value <= info.max), self.dtype)

    def _fill(self, value, level: int) -> None:
        rank = len(self.shape)
        if not isinstance(value, list):
            if level != rank:
                raise _invalid(f"JSON Value: {_excerpt(value)} found at incorrect level: "
                               f"{level + 1} in the JSON DOM. Expected at level: {rank}")
            self.values.append(self._leaf(value))
            return
        if level >= rank:
            raise _invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
        if len(value) != self.shape[level]:
            raise _invalid(f"Encountered list at unexpected size: {len(value)} at level: "
                           f"{level} expected size: {self.shape[level]}")
        # Fast path for the innermost lists of integer maps: ranges are checked in array().
        if level == rank - 1 and self._ints is not None and set(map(type, value)) <= {int}:
            self.values.extend(value)
            return
        for item in value:
            self._fill(item, level + 1)

    def _leaf(self, value):
        dtype = self.dtype
        if isinstance(value, dict):
            if dtype == types_pb2.DT_STRING:
                return _decode_b64(value)
            raise _type_error(value, dtype)
        if dtype in _FLOATS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _type_error(value, dtype)
            _, digits, largest = _FLOATS[dtype]
            if isinstance(value, int):
                if abs(value) > (1 << digits) - 1:
                    raise _lossy_error(value, _type_name(dtype))
            elif math.isfinite(value) and abs(value) > largest:
                raise _lossy_error(value, _type_name(dtype))
            return value
        if self._ints is not None:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _type_error(value, dtype)
            return value  # range: array()
        if dtype == types_pb2.DT_BOOL:
            if not isinstance(value, bool):
                raise _type_error(value, dtype)
            return value
        if dtype == types_pb2.DT_STRING:
            if not isinstance(value, str):
                raise _type_error(value, dtype)
            return value.encode("utf-8", "surrogatepass")
        raise RequestError(grpc.StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: {_excerpt(value)} to type: "
                           f"{_type_name(dtype)}")

    def array(self, shape: list[int]) -> np.ndarray:
        if self.dtype == types_pb2.DT_STRING:
            array = np.empty(len(self.values), dtype=object)
            array[:] = self.values
            return array.reshape(shape)
        if self._ints is not None:
            return np.array(self.values, dtype=self._ints).reshape(shape)
        if self.dtype in _FLOATS:
            return np.array(self.values, dtype=_FLOATS[self.dtype][0]).reshape(shape)
        if self.dtype == types_pb2.DT_BOOL:
            return np.array(self.values, dtype=np.bool_).reshape(shape)
        # Other types fail at their first value; without any, the tensor is empty.
        return np.zeros(shape, dtype=tf.dtypes.as_dtype(self.dtype).as_numpy_dtype)



def _proto(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(array, dtype=tf.dtypes.as_dtype(dtype))


def _single_tensor(value, dtype: int) -> tensor_pb2.TensorProto:
    tensor = _Tensor(dtype)
    tensor.add(value)
    return _proto(tensor.array(tensor.shape), dtype)


def _instance_tensors(instances: list, dtypes: dict[str, int]) -> dict[str, tensor_pb2.TensorProto]:
    """json_tensor.cc's FillTensorMapFromInstancesList: the rows, stacked."""
    first = instances[0]
    if not isinstance(first, dict) and len(dtypes) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")

    def is_object(value) -> bool:
        return isinstance(value, dict) and not _is_b64(value)

    objects = is_object(first)
    names = sorted(dtypes)
    tensors: dict[str, _Tensor] = {}
    shapes: dict[str, list[int]] = {}

    def add(name: str, value) -> None:
        if name not in dtypes:
            raise _invalid(f"JSON object: does not have named input: {name}")
        tensor = tensors.setdefault(name, _Tensor(dtypes[name]))
        before = len(tensor.values)
        tensor.add(value)
        size = len(tensor.values) - before
        if name not in shapes:
            shapes[name] = tensor.shape
        elif math.prod(shapes[name]) != size:
            raise _invalid(f"Expecting tensor size: {math.prod(shapes[name])} but got: {size}")
        elif shapes[name] != tensor.shape:
            raise _invalid(f"Expecting shape {_shape_text(shapes[name])} but got: "
                           f"{_shape_text(tensor.shape)}")

    for index, item in enumerate(instances):
        if objects:
            if not is_object(item):
                raise _invalid(f"Expecting object but got list at item {index} of input list")
            for name, value in item.items():
                try:
                    add(name, value)
                except RequestError as error:
                    raise RequestError(error.code, f"Failed to process element: {index} key: "
                                       f"{name} of 'instances' list. Error: "
                                       f"{_status_text(error)}") from None
            if set(item) != set(names):
                raise _invalid(f"Failed to process element: {index} of 'instances' list. JSON "
                               f"object: {_excerpt(item)} must only have keys: "
                               f"{','.join(names)}")
        else:
            if is_object(item):
                raise _invalid(f"Expecting value/list but got object at item {index} of input "
                               "list")
            try:
                add(names[0], item)
            except RequestError as error:
                raise RequestError(error.code, f"Failed to process element: {index} of "
                                   f"'instances' list. Error: {_status_text(error)}") from None
    return {name: _proto(tensor.array([len(instances), *shapes[name]]), dtypes[name])
            for name, tensor in tensors.items()}


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _input_tensors(inputs, dtypes: dict[str, int]) -> dict[str, tensor_pb2.TensorProto]:
    """json_tensor.cc's FillTensorMapFromInputsMap: one value, or an object of them."""
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(dtypes) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        name = next(iter(dtypes))
        return {name: _single_tensor(inputs, dtypes[name])}
    tensors = {}
    for name in sorted(dtypes):  # keys that are no input are ignored, as TF Serving does
        if name not in inputs:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = _single_tensor(inputs[name], dtypes[name])
    return tensors


def request_tensors(doc: Mapping, inputs: Mapping) -> tuple[str, dict[str, tensor_pb2.TensorProto]]:
    """A parsed predict body -> (``ROW`` or ``COLUMNAR``, {input alias: TensorProto}).

    ``inputs`` maps the signature's input aliases to their TensorInfo (or dtype). The rules
    are json_tensor.cc's FillPredictRequestFromJson: exactly one of ``instances`` (a
    non-empty list; with several inputs, a list of objects with one key per input; every
    row has the same shape) and ``inputs`` (one value or an object of named values);
    integers only from JSON integers in the type's range, floats from any number that
    converts without loss, strings from JSON strings or ``{"b64": ...}``; every list at a
    level has the same length (the tensor is dense).
    """
    dtypes = {name: _dtype_of(info) for name, info in inputs.items()}
    if not dtypes:
        raise _invalid("Failed to get input map for signature")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _format_error(doc, "Not formatted correctly expecting only one of 'inputs' or "
                                 "'instances' keys to exist ")
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise _format_error(doc, "Excepting 'instances' to be an list/array")
        if not instances:
            raise _format_error(doc, "No values in 'instances' array")
        return ROW, _instance_tensors(instances, dtypes)
    if has_inputs:
        return COLUMNAR, _input_tensors(doc["inputs"], dtypes)
    raise _invalid("Missing 'inputs' or 'instances' key")


# -- output tensors -> response JSON -----------------------------------------------------


def _nested(items: list[str], shape: tuple[int, ...]) -> str:
    """Flat value texts -> the nested JSON lists of ``shape``."""
    if not shape:
        return items[0]
    level = items
    for depth in range(len(shape) - 1, -1, -1):
        size, count = shape[depth], math.prod(shape[:depth])
        level = ["[" + ",".join(level[index * size:(index + 1) * size]) + "]"
                 for index in range(count)]
    return level[0]


def _output_type_name(array: np.ndarray) -> str:
    try:
        return _type_name(tf.dtypes.as_dtype(array.dtype).as_datatype_enum)
    except TypeError:
        return array.dtype.name


def _values_json(name: str, array: np.ndarray) -> str:
    """One tensor as JSON (json_tensor.cc's AddTensorValues)."""
    array = np.asarray(array)
    kind = array.dtype.name
    if kind == "uint8":  # images: a table of the 256 texts is twice as fast as json.dumps
        return _nested(list(map(_UINT8_TEXTS.__getitem__, array.ravel().tolist())), array.shape)
    if kind in _WRITABLE_INTEGERS or kind == "bool":
        return json.dumps(array.tolist(), separators=(",", ":"))
    if kind in ("float32", "float64"):
        single = kind == "float32"
        flat = array.ravel().tolist()
        texts = [f"{value:.6g}" for value in flat]
        if flat:
            with np.errstate(all="ignore"):
                back = np.array(texts, dtype=np.float64).astype(array.dtype)
            exact = (back == array.ravel()) | np.isnan(array.ravel())
            digits = 9 if single else 17
            for index in np.flatnonzero(~exact):
                texts[index] = f"{flat[index]:.{digits}g}"
            texts = [_finish_decimal(text) for text in texts]
        return _nested(texts, array.shape)
    if array.dtype == object or array.dtype.kind == "S":
        as_bytes = name.endswith(_BYTES_SUFFIX)
        texts = []
        for value in array.ravel().tolist():
            value = value if isinstance(value, bytes) else str(value).encode()
            if as_bytes:
                texts.append('{"b64":"' + base64.b64encode(value).decode() + '"}')
                continue
            try:
                texts.append(json.dumps(value.decode("utf-8")))
            except UnicodeDecodeError:
                raise _invalid(f"Failed to write JSON value for tensor type: string (output "
                               f"{name!r} holds bytes that are not UTF-8: name it "
                               f"'...{_BYTES_SUFFIX}' to get them as base64)") from None
        return _nested(texts, array.shape)
    raise _invalid(f"Failed to write JSON value for tensor type: {_output_type_name(array)}")


def _finish_decimal(text: str) -> str:
    if text == "nan":
        return "NaN"
    if text in ("inf", "-inf"):
        return "-Infinity" if text[0] == "-" else "Infinity"
    if "." not in text and "e" not in text:
        return text + ".0"
    return text


def response_json(outputs: Mapping[str, np.ndarray], request_format: str) -> str:
    """Output arrays -> the response body (json_tensor.cc's MakeJsonFromTensors).

    ``ROW``: ``{"predictions": [...]}``, one element per example (dimension 0, which all
    outputs must share): the values themselves with one output, an object of them with
    several. ``COLUMNAR``: ``{"outputs": ...}``, the whole tensor, or an object of them.
    Ints and bools are JSON ints and bools; floats have six significant digits unless
    more are needed to read back the same value (``NaN``, ``Infinity``, ``-Infinity``
    written bare, as TF Serving does); strings are JSON strings, or ``{"b64": ...}`` for
    aliases ending in ``_bytes``. Other types (half, bfloat16, ...) are refused, as TF
    Serving refuses them.
    """
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    several = len(names) > 1
    if request_format == COLUMNAR:
        if not several:
            return '{"outputs":' + _values_json(names[0], arrays[names[0]]) + "}"
        members = [json.dumps(name) + ":" + _values_json(name, arrays[name]) for name in names]
        return '{"outputs":{' + ",".join(members) + "}}"
    if request_format != ROW:
        raise _invalid("Invalid request format")
    batch = 0
    for name in names:
        array = arrays[name]
        if array.ndim == 0:
            raise _invalid(f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise _invalid(f"Tensor name: {name} has invalid batch size: {array.shape[0]}")
        if batch and array.shape[0] != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: "
                           f"{array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    rows = []
    for index in range(batch):
        if several:
            rows.append("{" + ",".join(json.dumps(name) + ":"
                                       + _values_json(name, arrays[name][index, ...])
                                       for name in names) + "}")
        else:
            rows.append(_values_json(names[0], arrays[names[0]][index, ...]))
    return '{"predictions":[' + ",".join(rows) + "]}"


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


class RestApi:
    """Answers one REST request: ``handle(method, path, body) -> (HTTP status, JSON)``."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

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


# -- static files ------------------------------------------------------------------------


def static_file(root: Path, raw_path: str) -> Path | None:
    """The file under ``root`` a URL path names, or None (also for any way out of it).

    The path is percent-decoded once; ``..`` segments, hidden names (``.git``),
    backslashes and NUL bytes are refused, and the resolved file (symbolic links
    followed) must still lie under ``root``. A folder serves its ``index.html``.
    """
    decoded = unquote(raw_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = [part for part in decoded.split("/") if part not in ("", ".")]
    if any(part.startswith(".") for part in parts):
        return None
    base = root.resolve()
    try:
        target = base.joinpath(*parts).resolve(strict=True)
        if target.is_dir():
            target = (target / "index.html").resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def content_type(path: Path) -> str:
    return _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


# -- HTTP --------------------------------------------------------------------------------


class _BodyRefused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, *, api: RestApi, max_body_bytes: int,
                 static_dir: Path | None, cors_origin: str | None, workers: int):
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.static_dir = static_dir
        self.cors_origin = cors_origin
        self.slots = threading.BoundedSemaphore(workers)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    protocol_version = "HTTP/1.1"
    server_version = "spade-serve"
    timeout = IDLE_TIMEOUT_SECONDS

    # -- dispatch -------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        api = _API_PATH.fullmatch(path) is not None
        # A body this server does not read would be taken for the next request.
        self._close_after = not (api and method in _BODY_METHODS) and (
            self.headers.get("Content-Length", "0").strip() not in ("", "0")
            or "Transfer-Encoding" in self.headers)
        try:
            if api:
                self._api(method, path)
            elif self.server.static_dir is not None and method in ("GET", "HEAD"):
                self._static(path, head=method == "HEAD")
            else:
                self._send(404, error_json(f"Not found: {method} {path}"),
                           head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True

    def _api(self, method: str, path: str) -> None:
        if method == "OPTIONS" and self.server.cors_origin is not None:
            self._send(200, b"", content="text/plain")  # a CORS preflight
            return
        if method == "HEAD":  # no body may follow a HEAD answer
            status, body = self.server.api.handle(method, path)
            self._send(status, body, head=True)
            return
        with self.server.slots:
            try:
                body = self._read_body() if method in _BODY_METHODS else b""
            except _BodyRefused as refusal:
                self._refuse(refusal)
                return
            status, answer = self.server.api.handle(method, path, body)
        self._send(status, answer)

    def _static(self, path: str, head: bool) -> None:
        target = static_file(self.server.static_dir, path)
        try:
            data = target.read_bytes() if target is not None else None
        except OSError:
            data = None
        if data is None:
            self._send(404, error_json(f"Not found: {path}"), head=head)
            return
        self._send(200, data, content=content_type(target), head=head,
                   extra={"Cache-Control": "no-cache"})

    # -- bodies ---------------------------------------------------------------------

    def _declared_length(self) -> int | None:
        encoding = self.headers.get("Transfer-Encoding")
        if encoding and encoding.strip().lower() != "identity":
            raise _BodyRefused(411, f"request bodies sent with Transfer-Encoding: {encoding} "
                                    "are not accepted: send Content-Length")
        text = self.headers.get("Content-Length")
        if text is None:
            return None
        if not text.strip().isdigit():
            raise _BodyRefused(400, f"invalid Content-Length: {text!r}")
        return int(text)

    def _too_large(self, what: str) -> _BodyRefused:
        return _BodyRefused(413, f"{what} is larger than this server's limit of "
                                 f"{self.server.max_body_bytes} bytes")

    def _read_body(self) -> bytes:
        length = self._declared_length()
        if length is None:
            return b""
        if length > self.server.max_body_bytes:
            raise self._too_large(f"request body of {length} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise _BodyRefused(400, f"request body ended after {len(body)} of {length} bytes")
        if "gzip" in self.headers.get("Content-Encoding", "").lower():
            return self._gunzip(body)
        return body

    def _gunzip(self, body: bytes) -> bytes:
        limit = self.server.max_body_bytes
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise _BodyRefused(400, f"Failed to uncompress the gzipped body: {error}") from None
        if len(data) > limit:
            raise self._too_large("gzip request body, uncompressed,")
        return data

    def handle_expect_100(self) -> bool:
        """Refuse an oversized or chunked body before the client sends it."""
        try:
            length = self._declared_length()
            if length is not None and length > self.server.max_body_bytes:
                raise self._too_large(f"request body of {length} bytes")
        except _BodyRefused as refusal:
            self._refuse(refusal)
            return False
        return super().handle_expect_100()

    def _refuse(self, refusal: _BodyRefused) -> None:
        """Answer without reading the body, then close the connection: the unread bytes
        are drained for a moment first, so the client gets the answer, not a reset."""
        self._send(refusal.status, error_json(refusal.message), close=True)
        deadline = time.monotonic() + _DRAIN_SECONDS
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(1 << 16):
                    break
        except OSError:
            pass

    # -- answers --------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content: str = "application/json",
              head: bool = False, close: bool = False,
              extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if self.server.cors_origin is not None:
            self.send_header("Access-Control-Allow-Origin", self.server.cors_origin)
            self.send_header("Access-Control-Allow-Methods", _CORS_METHODS)
            self.send_header("Access-Control-Allow-Headers", _CORS_HEADERS)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if close or getattr(self, "_close_after", False):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, unknown method), as JSON."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.log_error("code %d, message %s", code, message)
        self._send(code, error_json(message or phrase), close=True,
                   head=self.command == "HEAD" or code < 200 or code in (204, 304))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("%s - %s", self.address_string(), format % args)


class RestServer:
    """TF Serving's REST API (and optionally a folder of static files) on one port.

    Args:
        manager: the model versions to answer from (``SpadeServer.manager``).
        host: the interface; loopback unless another one is asked for.
        port: the port; 0 picks a free one (``start`` returns it).
        max_body_bytes: the largest request body read (gzip bodies: uncompressed);
            larger ones are answered 413 from their Content-Length, unread.
        static_dir: a folder served under ``/`` (``index.html`` at ``/``), or None.
        cors_origin: None (default): no CORS headers, for a page served from this
            same server, and no other web page may call the API from a browser. ``"*"``
            (or one origin) sends TF Serving's CORS headers on every answer and answers
            preflight OPTIONS requests.
        workers: REST requests read and answered at once (others wait their turn).
    """

    def __init__(self, manager: ModelManager, host: str = sig.DEFAULT_HOST,
                 port: int = sig.DEFAULT_REST_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 static_dir: str | Path | None = None, cors_origin: str | None = None,
                 workers: int = DEFAULT_WORKERS):
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes={max_body_bytes}: expected at least 1")
        if workers < 1:
            raise ValueError(f"workers={workers}: expected at least 1")
        self.manager = manager
        self.host = host
        self.port = port
        self.max_body_bytes = max_body_bytes
        self.static_dir = Path(static_dir) if static_dir is not None else None
        self.cors_origin = cors_origin
        self.workers = workers
        self.api = RestApi(manager)
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host = self.host
        return f"[{host}]:{self.port}" if ":" in host and not host.startswith("[") \
            else f"{host}:{self.port}"

    def bind(self) -> int:
        """Take the port (0: a free one) without answering yet; returns it.

        Lets a caller fail on a taken port before loading a model; :meth:`start` binds
        when this was not called.
        """
        if self._server is not None:
            return self.port
        if self.static_dir is not None and not self.static_dir.is_dir():
            raise RestServerError(f"static folder {self.static_dir} is not a folder")
        try:
            server = _HttpServer((self.host.strip("[]"), self.port), _Handler, api=self.api,
                                 max_body_bytes=self.max_body_bytes,
                                 static_dir=self.static_dir, cors_origin=self.cors_origin,
                                 workers=self.workers)
        except OSError as error:
            raise RestServerError(f"cannot listen on {self.address}: {error}") from None
        self.port = server.server_address[1]
        self._server = server
        return self.port

    def start(self) -> int:
        """Bind (unless :meth:`bind` did) and answer from a background thread; returns
        the port."""
        if self._thread is not None:
            raise RestServerError("this REST server was started already")
        self.bind()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.2}, name="spade-rest", daemon=True)
        self._thread.start()
        log.info("REST API of model %r on http://%s/v1/models/%s", self.manager.model_name,
                 self.address, self.manager.model_name)
        return self.port

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop accepting requests and close the port; True once the serving thread ended
        (within ``timeout`` seconds). Requests in progress finish on their own threads."""
        server, thread = self._server, self._thread
        if server is None:
            return True
        if thread is not None and thread.is_alive():
            stopper = threading.Thread(target=server.shutdown, daemon=True)
            stopper.start()
            stopper.join(timeout)
        server.server_close()  # a bound port that never served is released too
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> RestServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
