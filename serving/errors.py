"""The refusal every part of the server raises, without TensorFlow (the command line reads
configs that name it before TensorFlow's slow start)."""

from __future__ import annotations

import grpc


class RequestError(Exception):
    """A request the server refuses, with the gRPC code TF Serving would answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
