"""TF Serving's JSON -> tensor rules (``util/json_tensor.cc``): request bodies of the REST
API into TensorProtos, refusals worded as TF Serving words them. No sockets here."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterator, Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.model_manager import RequestError
from serving.rest.codes import invalid as _invalid

ROW, COLUMNAR = "row", "columnar"  # the two request formats, and the answers they get

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
_MAX_RANK = 254  # TensorShape's limit
_EXCERPT_CHARS = 200  # JSON values quoted in messages are cut to this length
_B64_KEY = "b64"
BYTES_SUFFIX = "_bytes"


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


def type_name(dtype: int) -> str:
    if dtype in _TYPE_NAMES:
        return _TYPE_NAMES[dtype]
    try:
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    except ValueError:
        return f"dtype enum {dtype}"


def _type_error(value, dtype: int) -> RequestError:
    return _invalid(f"JSON Value: {_excerpt(value)} Type: {_json_type(value)} is not of "
                    f"expected type: {type_name(dtype)}")


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
                    raise _lossy_error(value, type_name(dtype))
            elif math.isfinite(value) and abs(value) > largest:
                raise _lossy_error(value, type_name(dtype))
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
                           f"{type_name(dtype)}")

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

