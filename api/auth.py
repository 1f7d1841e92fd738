"""Users and bearer tokens: tokens are shown once and stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.jobstore import JobStoreError
from api.models import Token, User, utcnow

__all__ = [
    "LOCAL_USER",
    "QUOTA_FIELDS",
    "TOKEN_PREFIX",
    "InvalidUserName",
    "UserExists",
    "UserNotFound",
    "authenticate",
    "create_user",
    "get_or_create_user",
    "hash_token",
    "issue_token",
    "list_tokens",
    "local_user",
    "revoke_token",
    "set_quota",
]

LOCAL_USER = "local"  # the single (admin) user of auth="local" mode
TOKEN_PREFIX = "adf_"  # marks a string as one of our tokens (secret scanners, logs)
SHOWN_PREFIX_LEN = 12  # "adf_" + 8 random chars: what listings show and `token revoke` accepts
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per token
_USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class UserExists(JobStoreError):
    """A user with that name already exists."""


class InvalidUserName(JobStoreError, ValueError):
    """A user name outside [A-Za-z0-9_.-]{1,64}."""


def hash_token(token: str) -> str:
    """The token's SHA-256, hex: what the store keeps (the token has 256 random bits, so no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


def _check_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise InvalidUserName(f"user name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ . -")
    return name


def _find_user(s: Session, name: str) -> User | None:
    return s.scalars(select(User).where(User.name == name)).one_or_none()


def create_user(s: Session, name: str, *, admin: bool = False) -> User:
    """A new user; :class:`UserExists` if the name is taken."""
    _check_name(name)
    user = User(name=name, is_admin=admin)
    s.add(user)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        if _find_user(s, name) is None:
            raise
        raise UserExists(f"user {name!r} already exists") from None
    return user


def get_or_create_user(s: Session, name: str, *, admin: bool = False) -> User:
    """The user ``name``, created if missing; ``admin=True`` promotes an existing user (never demotes)."""
    user = _find_user(s, _check_name(name))
    if user is None:
        try:
            return create_user(s, name, admin=admin)
        except UserExists:  # created concurrently
            user = _find_user(s, name)
            assert user is not None
    if admin and not user.is_admin:
        user.is_admin = True
        s.commit()
    return user


class UserNotFound(JobStoreError, LookupError):
    """No user with that name."""


QUOTA_FIELDS = ("max_running_jobs", "max_gpus", "max_gpu_hours")  # per-user overrides of the settings' quotas


def set_quota(s: Session, name: str, changes: dict[str, float | int | None]) -> User:
    """Set (a number) or clear (None: back to the service's default) the user's own quotas.

    ``changes`` maps names of :data:`QUOTA_FIELDS` to their new values; the others stay as they are.
    """
    user = _find_user(s, _check_name(name))
    if user is None:
        raise UserNotFound(f"no user {name!r}")
    unknown = set(changes) - set(QUOTA_FIELDS)
    if unknown:
        raise ValueError(f"{sorted(unknown)}: not quotas ({', '.join(QUOTA_FIELDS)})")
    for field, value in changes.items():
        if value is not None and value < 0:
            raise ValueError(f"{field}: {value} is negative")
        setattr(user, field, value)
    s.commit()
    return user


def local_user(s: Session) -> User:
    """The admin that every request acts as under auth="local"."""
    return get_or_create_user(s, LOCAL_USER, admin=True)


def issue_token(s: Session, user: User) -> str:
    """A new token for ``user``: the plain value is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    s.add(Token(user_id=user.id, token_hash=hash_token(token), prefix=token[:SHOWN_PREFIX_LEN]))
    s.commit()
    return token


def authenticate(s: Session, token: str | None) -> User | None:
    """The user holding ``token``; None for a missing, unknown or revoked token.

    The lookup is by the token's SHA-256 through an index, not by comparing secrets: an
    attacker timing it learns at most how a hash of their own guess compares with stored
    hashes, which says nothing usable about any token (preimages of SHA-256 are out of
    reach), so no constant-time comparison is needed.
    """
    if not token:
        return None
    row = s.scalars(
        select(Token).where(Token.token_hash == hash_token(token), Token.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_RESOLUTION:
        row.last_used_at = now
        s.commit()
    return row.user


def list_tokens(s: Session, *, user: User | None = None) -> list[Token]:
    """Every token (or ``user``'s), oldest first, revoked ones included."""
    query = select(Token).order_by(Token.created_at, Token.id)
    if user is not None:
        query = query.where(Token.user_id == user.id)
    return list(s.scalars(query).all())


def revoke_token(s: Session, prefix_or_token: str) -> int:
    """Revoke the live tokens with this shown prefix (or this full token); returns how many."""
    if len(prefix_or_token) > SHOWN_PREFIX_LEN:
        where = Token.token_hash == hash_token(prefix_or_token)
    else:
        where = Token.prefix == prefix_or_token
    tokens = s.scalars(select(Token).where(where, Token.revoked_at.is_(None))).all()
    now = utcnow()
    for token in tokens:
        token.revoked_at = now
    s.commit()
    return len(tokens)
