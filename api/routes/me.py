"""/v1/me/notify-secret: the caller's key for checking the signatures of their jobs' notifications.

Only the user themselves reads or rotates it (there is no route to another user's, admins
included): it is what tells their receiver that a POST came from this service (api/notify.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.deps import CurrentUser, SessionDep
from api.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, notify_secret, rotate_notify_secret

__all__ = ["router"]

router = APIRouter(prefix="/v1/me", tags=["me"])

NO_STORE = {"Cache-Control": "no-store"}  # a secret: no cache keeps a copy of the answer


class NotifySecretOut(BaseModel):
    user: str
    secret: str = Field(description="HMAC-SHA256 key (its UTF-8 text) of the signatures of your jobs' notifications.")
    signature_header: str = Field(SIGNATURE_HEADER, description='"sha256=" + the hex HMAC of f"{timestamp}.{body}".')
    timestamp_header: str = Field(TIMESTAMP_HEADER, description="The Unix time the signature covers.")


@router.get("/notify-secret", response_model=NotifySecretOut)
def get_notify_secret(user: CurrentUser, session: SessionDep, response: Response) -> NotifySecretOut:
    """Your notification secret, made the first time it is asked for or needed (docs/rest.md, Notifications)."""
    response.headers.update(NO_STORE)
    return NotifySecretOut(user=user.name, secret=notify_secret(session, user))


@router.post("/notify-secret", response_model=NotifySecretOut)
def rotate(user: CurrentUser, session: SessionDep, response: Response) -> NotifySecretOut:
    """A new notification secret: notifications signed from now on use it, and the old one verifies none."""
    response.headers.update(NO_STORE)
    return NotifySecretOut(user=user.name, secret=rotate_notify_secret(session, user))
