"""The Host names the server answers to: a guard against DNS rebinding.

A web page can make a browser send requests to 127.0.0.1 under the page's own host name (its DNS
answer switched to 127.0.0.1 after the page loaded): the browser then treats the API as the page's
own origin. With ``auth: local`` (no tokens, everyone the admin) such a page could submit and cancel
jobs. The browser still sends the page's host name in ``Host``, so the server answers only requests
whose Host is one of ``allowed_hosts``; by default, in local mode, the loopback names. With tokens
the page has no token to send, and any Host is answered unless ``allowed_hosts`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem_response

__all__ = ["HostCheck", "host_name"]


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without its port: ``[::1]:8000`` → ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):  # an IPv6 literal
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostCheck:
    """ASGI middleware: a request whose Host is not allowed gets 421 (problem+json), naming the host."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if host_name(raw) not in self.allowed:
                shown = repr(raw[:200]) if raw.isascii() and raw.isprintable() else ascii(raw[:200])
                response = problem_response(
                    421, f"Host {shown} is not a name this server answers to ({', '.join(sorted(self.allowed))}; "
                         "ADF_ALLOWED_HOSTS): a page's DNS answer switched to this machine (DNS rebinding) "
                         "must not reach the API", title="Misdirected request")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
