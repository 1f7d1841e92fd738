"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the service answers has ``type``, ``title``, ``status`` and ``detail``; a
validation error adds ``errors``: one ``{"path", "message", "line"}`` per bad field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.jobstore import IdempotencyConflict, InvalidTransition, JobNotFound, TrialNotFound

__all__ = ["PROBLEM_JSON", "Problem", "install_problem_handlers"]

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answered as problem+json: ``raise Problem(404, "job j123 not found")``."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.detail, self.title, self.extra = status, detail, title, extra


_TITLES = {
    400: "Bad request", 401: "Unauthorized", 404: "Not found", 405: "Method not allowed",
    409: "Conflict", 413: "Content too large", 415: "Unsupported media type",
    421: "Misdirected request", 422: "Unprocessable content", 429: "Too many requests", 500: "Internal server error",
    503: "Service unavailable",
}


def problem_response(status: int, detail: str, title: str | None = None, headers=None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title or _TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> set[str]:
    """The methods some route (included routers too) fully matches at the request's path."""
    return {method for method in _METHODS
            if any(route.matches(dict(request.scope, method=method))[0] == Match.FULL
                   for route in request.app.routes)}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem_response(exc.status, exc.detail, exc.title, headers=headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette's Allow names the first route of the path only
            allowed = ", ".join(sorted(_allowed_methods(request)))
            headers = (headers or {}) | {"Allow": allowed}
            return problem_response(405, f"{request.method} {request.url.path}: allowed {allowed}", headers=headers)
        return problem_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"path": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", ""), "line": None}
            for e in exc.errors()
        ]
        return problem_response(422, "the request does not validate", errors=errors)

    @app.exception_handler(JobNotFound)
    @app.exception_handler(TrialNotFound)
    async def _not_found(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(404, str(exc))

    @app.exception_handler(InvalidTransition)
    @app.exception_handler(IdempotencyConflict)
    async def _conflict(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(409, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(500, f"{type(exc).__name__}: {exc}")
