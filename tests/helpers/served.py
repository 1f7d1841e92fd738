"""An app under a real uvicorn server on 127.0.0.1, in a thread of the test process, with the
service's HTTP protocol (api/http.py): for tests that need real sockets but not a server process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

from api.http import ProblemHttpProtocol
from api.ports import free_port

__all__ = ["served"]


@contextmanager
def served(app: FastAPI) -> Iterator[int]:
    """``app`` served until the block ends; its port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           http=ProblemHttpProtocol))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
