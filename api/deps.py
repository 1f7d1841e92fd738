"""FastAPI dependencies: the store session, the current user, the service's parts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from api.auth import authenticate, local_user
from api.models import User
from api.problems import Problem
from api.runner import RayJobs
from api.settings import Settings

__all__ = ["CurrentUser", "Services", "SessionDep", "ServicesDep"]


@dataclass
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    ray: RayJobs
    dashboard_url: str | None


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def current_user(request: Request, services: ServicesDep, session: SessionDep) -> User:
    if services.settings.auth == "local":
        return local_user(session)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Problem(401, "no bearer token: send 'Authorization: Bearer <token>' (adf-service token create)")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "the Authorization header is not 'Bearer <token>'")
    user = authenticate(session, token.strip())
    if user is None:
        raise Problem(401, "the bearer token is unknown or revoked")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
