"""TF Serving's tensor -> JSON rules (``util/json_tensor.cc``): output arrays into REST
answers. No sockets here."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping

import numpy as np
import orjson
import tensorflow as tf

from serving.rest.codes import invalid as _invalid
from serving.rest.json_request import BYTES_SUFFIX, COLUMNAR, ROW, type_name

_WRITABLE_INTEGERS = {"int8", "int16", "int32", "uint8", "int64", "uint32", "uint64"}


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
        return type_name(tf.dtypes.as_dtype(array.dtype).as_datatype_enum)
    except TypeError:
        return array.dtype.name


def _values_json(name: str, array: np.ndarray) -> str:
    """One tensor as JSON (json_tensor.cc's AddTensorValues)."""
    array = np.asarray(array)
    kind = array.dtype.name
    if (kind in _WRITABLE_INTEGERS or kind == "bool") and array.ndim == 0:
        return json.dumps(array.item())  # orjson would write a 0-d array as a list
    if kind in _WRITABLE_INTEGERS or kind == "bool":
        # orjson writes numpy's ints and bools as TF Serving does (no spaces), in C: images
        # come back 3x (256x256) to 10x (64x64) faster than from Python's own texts.
        return orjson.dumps(np.ascontiguousarray(array),
                            option=orjson.OPT_SERIALIZE_NUMPY).decode()
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
        as_bytes = name.endswith(BYTES_SUFFIX)
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
                               f"'...{BYTES_SUFFIX}' to get them as base64)") from None
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
