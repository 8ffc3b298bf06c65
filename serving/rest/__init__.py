"""TF Serving's REST API over the served models, the metrics and the painter's files.

Routes (as TensorFlow Serving's ``http_rest_api_util.cc`` matches them: the whole path,
case-insensitively, no trailing slash):

- ``POST /v1/models/NAME[/versions/N | /labels/L]:predict``: ``{"signature_name"?,
  "instances": [...]}`` (row format) answers ``{"predictions": [...]}``; ``{"inputs": ...}``
  (columnar format) answers ``{"outputs": ...}``. ``:classify`` and ``:regress`` answer
  501 (this server's signatures are predict signatures, as over gRPC).
- ``GET /v1/models/NAME[/versions/N | /labels/L]``: GetModelStatusResponse as JSON;
  ``.../metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``.
- Other ``/v1/...`` paths and methods: 400 ``Malformed request: METHOD PATH``, as TF
  Serving answers; the metrics path when monitoring is on; other paths: the files of
  ``static_dir`` (``index.html`` at ``/``) for GET and HEAD when one is given, else 404.

Every error is ``{"error": "<message>"}`` with the HTTP code TF Serving maps from the
status code. The modules, one job each:

- :mod:`~serving.rest.codes`: HTTP codes and the error body;
- :mod:`~serving.rest.json_request`, :mod:`~serving.rest.json_response`: TF Serving's JSON
  <-> tensor rules (``util/json_tensor.cc``), pure functions;
- :mod:`~serving.rest.routes`: the API's routes, without sockets;
- :mod:`~serving.rest.static_files`: the painter's files;
- :mod:`~serving.rest.app`: the ASGI application (bodies, slots, queue, timeouts);
- :mod:`~serving.rest.protocol`, :mod:`~serving.rest.server`: uvicorn, started and stopped.
"""

from serving.rest.codes import error_json, http_status
from serving.rest.json_request import COLUMNAR, ROW, parse_json, request_tensors
from serving.rest.json_response import response_json
from serving.rest.routes import RestApi
from serving.rest.server import DEFAULT_MAX_BODY_BYTES, RestServer, RestServerError

__all__ = ["COLUMNAR", "DEFAULT_MAX_BODY_BYTES", "ROW", "RestApi", "RestServer",
           "RestServerError", "error_json", "http_status", "parse_json", "request_tensors",
           "response_json"]
