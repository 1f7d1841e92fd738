"""FastAPI dependencies: the store session, the current user, the service's parts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated

from anyio import CapacityLimiter
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.auth import authenticate, hash_token, local_user
from api.db import POOL_SIZE
from api.models import User
from api.pages import TrialPages
from api.problems import Problem
from api.runner import RayJobs
from api.settings import Settings

__all__ = ["CurrentUser", "CurrentViewer", "Services", "SessionDep", "ServicesDep", "Viewer", "Viewers"]


@dataclass(frozen=True)
class Viewer:
    """Who a request acts as, detached from any session (what read-only routes need)."""

    id: int
    name: str
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> Viewer:
        return cls(user.id, user.name, user.is_admin)


class Viewers:
    """Bearer tokens recently found valid: token hash -> Viewer, for ``ttl`` seconds.

    A token revoked in the store keeps working in a running server for at most ``ttl``
    seconds; unknown tokens are never remembered.
    """

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[Viewer, float]] = {}
        self._lock = threading.Lock()
        self.pending: dict[str, asyncio.Future[Viewer]] = {}  # lookups in flight (event loop only)

    def get(self, key: str) -> Viewer | None:
        with self._lock:
            hit = self._known.get(key)
            if hit is None or self._clock() > hit[1]:
                self._known.pop(key, None)
                return None
            return hit[0]

    def put(self, key: str, viewer: Viewer) -> None:
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[key] = (viewer, self._clock() + self.ttl)


# A request holds its session's connection between its threads (dependencies, route, cleanup) while it
# waits for the next one. Unbounded, more such requests than the pool has connections (40 + 10) left
# every thread of the pool of 40 waiting for a connection that only a thread could give back: a 500
# after the pool's 30 s (bench/api_load.py, 100 clients). Fewer slots than connections: a thread that
# asks for a connection always gets one.
SESSION_SLOTS = POOL_SIZE


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    ray: RayJobs
    dashboard_url: str | None
    pages: TrialPages = field(default_factory=TrialPages)
    viewers: Viewers = field(default_factory=Viewers)
    store_limiter: CapacityLimiter | None = None  # threads reading result pages at once (None: anyio's 40)
    parse_limiter: CapacityLimiter | None = None  # threads reading submitted grids at once (None: anyio's 40)
    # The cluster's live nodes and their free resources, for the queue (None: the dashboard did not answer)
    nodes: Callable[[], list | None] = field(default=lambda: None)
    session_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SESSION_SLOTS))


async def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """The request's store session; at most SESSION_SLOTS requests hold one at once, the others wait
    for a slot on the event loop, holding neither a thread nor a connection."""
    async with services.session_slots:
        session = services.sessions()
        try:
            yield session
        finally:
            await run_in_threadpool(session.close)  # its connection back to the pool: a round trip


SessionDep = Annotated[Session, Depends(get_session)]


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Problem(401, "no bearer token: send 'Authorization: Bearer <token>' (adf-service token create)")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "the Authorization header is not 'Bearer <token>'")
    return token.strip()


def _user(session: Session, services: Services, token: str | None) -> User:
    if services.settings.auth == "local":
        return local_user(session)
    user = authenticate(session, token)
    if user is None:
        raise Problem(401, "the bearer token is unknown or revoked")
    return user


def current_user(request: Request, services: ServicesDep, session: SessionDep) -> User:
    token = None if services.settings.auth == "local" else _bearer_token(request)
    return _user(session, services, token)


async def current_viewer(request: Request, services: ServicesDep) -> Viewer:
    """The request's user as a Viewer, from Viewers when the token was seen lately (no store access).

    Requests with the same token that miss together share one store lookup.
    """
    token = None if services.settings.auth == "local" else _bearer_token(request)
    key = "" if token is None else hash_token(token)
    if (viewer := services.viewers.get(key)) is not None:
        return viewer
    lookup = services.viewers.pending.get(key)
    if lookup is None:
        def look_up() -> Viewer:
            with services.sessions() as session:
                return Viewer.of(_user(session, services, token))

        def done(task: asyncio.Future[Viewer]) -> None:
            del services.viewers.pending[key]
            if not task.cancelled() and task.exception() is None:  # also marks a 401 as retrieved
                services.viewers.put(key, task.result())

        # A task of its own: a request that goes away does not take the others' answer with it.
        lookup = services.viewers.pending[key] = asyncio.ensure_future(run_in_threadpool(look_up))
        lookup.add_done_callback(done)
    return await asyncio.shield(lookup)


CurrentUser = Annotated[User, Depends(current_user)]
CurrentViewer = Annotated[Viewer, Depends(current_viewer)]
