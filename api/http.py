"""The HTTP layer under the app: uvicorn's httptools protocol, answering what it cannot parse as problem+json.

A request uvicorn cannot read (a request line of 100,000 characters, a malformed header)
never reaches FastAPI; uvicorn answers it with a ``text/plain`` 400 of its own. This
protocol answers the same 400 as every other error of the service (api/problems.py).
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.problems import PROBLEM_JSON

__all__ = ["ProblemHttpProtocol", "UNREADABLE_REQUEST"]

UNREADABLE_REQUEST = ("the HTTP request could not be read: a malformed request line or header, or one "
                      "longer than the server reads")


class ProblemHttpProtocol(HttpToolsProtocol):
    """``uvicorn.run(app, http=ProblemHttpProtocol)``: unreadable requests get a problem+json 400."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"type": "about:blank", "title": "Bad request", "status": 400,
                           "detail": UNREADABLE_REQUEST}).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head += [b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
                 b"content-length: " + str(len(body)).encode() + b"\r\n", b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
