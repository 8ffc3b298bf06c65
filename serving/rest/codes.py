"""TF Serving's REST error rules: the HTTP code for each gRPC status, the error body."""

from __future__ import annotations

import json

import grpc

from serving.model_manager import RequestError

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


def invalid(message: str) -> RequestError:
    """An INVALID_ARGUMENT refusal (the code of almost every malformed request)."""
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status TF Serving answers a gRPC status code with."""
    return _HTTP_STATUS.get(code, 500)


def error_json(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "<message>"}``."""
    return json.dumps({"error": message}).encode()

