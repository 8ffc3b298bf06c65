"""uvicorn's HTTP/1.1 protocol (h11) with TF Serving's manners at the edges.

uvicorn takes an ``http=`` protocol class; this one changes two things of its parent:

- A request h11 cannot parse (a bad request line, ``Content-Length: 12abc``) is answered
  with TF Serving's error body, ``{"error": ...}`` as JSON, naming what was wrong,
  instead of uvicorn's plain-text "Invalid HTTP request received.".
- A client that half-closes its side (``shutdown(SHUT_WR)``, ``printf ... | nc``) while
  a request is in flight still gets the answer: uvicorn would close the transport on the
  EOF and drop it. The application sees the body end (``more_body`` False) and answers;
  the connection closes after that answer.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# h11's words for the header mistakes users make, in this server's words.
_PARSE_ERRORS = {
    "bad Content-Length": "invalid Content-Length header: send the body's size in bytes",
    "Content-Length and Transfer-Encoding": "request has both Content-Length and "
                                            "Transfer-Encoding: send only Content-Length",
}


def parse_error_message(error: Exception) -> str:
    """One line for a request h11 refused: what was wrong, in this server's words."""
    text = str(error) or type(error).__name__
    for key, message in _PARSE_ERRORS.items():
        if key in text:
            return message
    return f"malformed HTTP request: {text}"


class _RecordingConnection(h11.Connection):
    """h11's connection, keeping its last parse error for the 400 answer's words."""

    last_error: Exception | None = None

    def next_event(self):  # noqa: ANN201 (h11's own signature)
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.last_error = error
            raise


class TfServingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol answering unparsable requests as JSON and half-closed
    connections at all."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        limit = self.config.h11_max_incomplete_event_size
        self.conn = _RecordingConnection(h11.SERVER, **(
            {} if limit is None else {"max_incomplete_event_size": limit}))
        self._peer_done_sending = False

    def send_400_response(self, msg: str) -> None:
        error = self.conn.last_error
        message = parse_error_message(error) if error is not None else msg
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers,
                                                             reason=b"Bad Request")))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # an answer had started already: only close
            pass
        self.transport.close()

    def eof_received(self) -> bool | None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None  # idle: let the transport close
        self._peer_done_sending = True
        if cycle.more_body:
            # The body ends here, short or not: the application sees it end and answers.
            cycle.more_body = False
            cycle.message_event.set()
        return True  # keep the transport open for the answer

    def on_response_complete(self) -> None:
        if self._peer_done_sending and not self.transport.is_closing():
            self.transport.close()  # the peer sends nothing more: the connection is done
            return
        super().on_response_complete()
