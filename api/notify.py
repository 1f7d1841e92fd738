"""Notifications of a job's end: a signed POST of its outcome to the ``notify_url`` its grid named.

When a job ends (succeeded, failed, cancelled), ``set_status`` marks its notification pending
(:func:`mark_for_notification`); the service's background loop POSTs what is due
(:func:`deliver_due`): the job's outcome as JSON (:func:`notification_body`), signed the way
Stripe and GitHub sign webhooks, an HMAC-SHA256 of ``f"{timestamp}.{body}"`` under its owner's
secret (:func:`sign`; docs/rest.md says how a receiver checks it), retried with exponential
backoff until the receiver answers 2xx or ``notify_max_attempts`` POSTs have failed.

Delivery is at least once (a service stopped between a POST and its record sends it again):
a receiver drops repeats by ``(job_id, ended_at)``. A URL that names or resolves to a loopback,
private or link-local address is refused (:func:`refused_notify_url`, SSRF), at submit and
again before each POST, unless ``notify_allow_private`` is set. Neither the secret nor the URL
(which may hold a credential of its own) is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.models import Job, TrialRow, User, utcnow
from api.settings import Settings
from api.status import ENDED_STATUSES
from trials.results import best_evaluation

__all__ = [
    "BACKOFF_CAP_SECONDS", "SIGNATURE_HEADER", "TIMEOUT_SECONDS", "TIMESTAMP_HEADER",
    "backoff_seconds", "deliver_due", "mark_for_notification", "notification_body", "notify_secret",
    "refused_notify_url", "rotate_notify_secret", "sign",
]

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-ADF-Timestamp"  # Unix seconds when the POST was signed
SIGNATURE_HEADER = "X-ADF-Signature"  # "sha256=" + hex HMAC of f"{timestamp}.{body}"
TIMEOUT_SECONDS = 5.0  # one POST: a slow receiver must not hold up the loop that also follows the jobs
BACKOFF_CAP_SECONDS = 3600.0  # the longest wait between two POSTs of one notification
EVENT = "job.ended"


def mark_for_notification(job: Job, now: datetime | None = None) -> None:
    """Make the POST of ``job``'s end due at ``now`` (default: now), if its grid named a notify_url.

    Called by ``set_status`` on every move to an ended status (the caller commits), so that each
    way a job ends notifies; a job resumed and ended again notifies again, its attempts from 0.
    """
    if job.notify_url:
        job.notify_status, job.notify_attempts, job.notify_next_at = "pending", 0, now or utcnow()


def notify_secret(s: Session, user: User) -> str:
    """The user's notification secret (64 hex characters, 256 random bits), made the first time it is
    needed: by the first notification of their jobs or when they ask for it (``GET /v1/me/notify-secret``).

    Made with a conditional UPDATE, so that two first uses at once agree on one secret.
    """
    if user.notify_secret is None:
        s.execute(update(User).where(User.id == user.id, User.notify_secret.is_(None))
                  .values(notify_secret=secrets.token_hex(32)))
        s.commit()
        s.refresh(user)
    assert user.notify_secret is not None
    return user.notify_secret


def rotate_notify_secret(s: Session, user: User) -> str:
    """A new secret for the user; notifications signed from now on use it, the old one verifies none."""
    user.notify_secret = secrets.token_hex(32)
    s.commit()
    return user.notify_secret


def _hours(seconds: float | None) -> float:
    return round((seconds or 0.0) / 3600.0, 6)


def _best_summary(best: dict[str, Any]) -> dict[str, Any]:
    """The best evaluation's metrics, its setting and its genotype's cells (provenance left out)."""
    keys = ("trial_id", "test_top1", "val_top1", "val_loss", "operators", "discretization", "n_inputs",
            "n_cells", "modalities", "fusion_params")
    summary = {key: best.get(key) for key in keys}
    genotype = json.loads(best["genotype"]) if best.get("genotype") else None
    if isinstance(genotype, dict):
        genotype.pop("provenance", None)
    return summary | {"genotype": genotype}


def notification_body(job: Job, best: dict[str, Any] | None) -> dict[str, Any]:
    """What the POST of ``job``'s end says: the job, its status and error, its best evaluation
    (``best``: the row ``GET /v1/jobs/{id}/best`` names, or None) and its usage in hours.

    ``best`` holds the trial id, test/val top-1, val loss, the setting and the genotype's cells;
    the full genotype with its provenance is at ``/v1/jobs/{job_id}/trials/{trial_id}/genotype``.
    """
    def iso(t: datetime | None) -> str | None:
        return None if t is None else t.isoformat()

    return {
        "event": EVENT,
        "job_id": job.id,
        "name": job.name,
        "owner": job.owner.name,
        "status": job.status,
        "error": job.error,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.ended_at),
        "best": None if best is None else _best_summary(best),
        "usage": {
            "gpu_hours": _hours(job.gpu_seconds), "cpu_hours": _hours(job.cpu_seconds),
            "lost_gpu_hours": _hours(job.lost_gpu_seconds), "lost_cpu_hours": _hours(job.lost_cpu_seconds),
        },
    }


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with the secret's text (UTF-8) over ``f"{timestamp}.".encode() + body``.

    The timestamp is signed with the body, so that a receiver that refuses old timestamps
    cannot be sent a captured notification again later.
    """
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _not_global(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def refused_notify_url(url: str, *, allow_private: bool) -> str | None:
    """Why the service will not POST to ``url``, or None when it will.

    Refused: anything but ``http(s)://host``; unless ``allow_private``, a host that is, or whose
    name resolves to, an address that is not global (loopback, private, link-local such as
    169.254.169.254, the cloud metadata service, shared, reserved, multicast): a grid must not
    make the service call into the network it runs in (SSRF). The message names the host only.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[::1": urlsplit refuses what it cannot split
        return f"not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "an http:// or https:// URL with a host is needed"
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return f"the port of host {host!r} is not a number from 0 to 65535"
    if allow_private:
        return None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if _not_global(address):
            shown = host if host == str(address) else f"{host} ({address})"
            return (f"host {shown} is a loopback, private or link-local address; this service posts "
                    "notifications to public addresses only")
    return None


def backoff_seconds(attempts: int, base: float) -> float:
    """The wait after the ``attempts``-th failed POST: ``base``, doubled each time, at most an hour."""
    return min(base * 2 ** (attempts - 1), BACKOFF_CAP_SECONDS)


def _best(s: Session, job: Job) -> dict[str, Any] | None:
    rows = s.scalars(select(TrialRow).where(TrialRow.job_id == job.id, TrialRow.stage == "evaluation")).all()
    return best_evaluation(row.to_dict() for row in rows)


def _post(s: Session, job: Job, settings: Settings) -> str | None:
    """POST the job's notification once; None when the receiver took it (2xx), else why not."""
    url = job.notify_url or ""
    refused = refused_notify_url(url, allow_private=settings.notify_allow_private)  # DNS may have changed
    if refused is not None:
        return refused
    body = json.dumps(notification_body(job, _best(s, job)), separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "adf-service", TIMESTAMP_HEADER: str(timestamp),
               SIGNATURE_HEADER: sign(notify_secret(s, job.owner), body, timestamp)}
    try:  # redirects are not followed: one could lead into the service's own network
        status = _send(url, body, headers)
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})"
    return None if 200 <= status < 300 else f"answered {status}"


def _send(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url`` through httpx's transport, not a client: a client logs each request's
    whole URL (INFO), and a notify_url may hold a credential (``user:password@``, ``?token=``).
    Its user info becomes Basic auth, as a client would make it. Returns the answer's status."""
    request = httpx.Request("POST", url, content=body, headers=headers,
                            extensions={"timeout": httpx.Timeout(TIMEOUT_SECONDS).as_dict()})
    if request.url.username or request.url.password:
        request = next(httpx.BasicAuth(request.url.username, request.url.password).auth_flow(request))
    with httpx.HTTPTransport() as transport:
        answer = transport.handle_request(request)
        answer.close()
        return answer.status_code


def _record(job: Job, failure: str | None, settings: Settings, now: datetime) -> None:
    job.notify_attempts += 1
    if failure is None:
        job.notify_status, job.notify_next_at = "sent", None
        return
    host = urlsplit(job.notify_url or "").hostname
    tries = f"attempt {job.notify_attempts} of {settings.notify_max_attempts}"
    if job.notify_attempts >= settings.notify_max_attempts:
        job.notify_status, job.notify_next_at = "failed", None
        log.warning("notifying the end of job %s to %s: %s, %s; given up", job.id, host, failure, tries)
        return
    wait = backoff_seconds(job.notify_attempts, settings.notify_backoff_seconds)
    job.notify_next_at = now + timedelta(seconds=wait)
    log.info("notifying the end of job %s to %s: %s, %s; again in %g s", job.id, host, failure, tries, wait)


def deliver_due(s: Session, settings: Settings, now: datetime | None = None) -> int:
    """POST every notification that is due at ``now`` (default: now) once; returns how many were tried.

    Due: pending, ``notify_next_at`` reached, the job still ended (one resumed meanwhile waits for
    its next end). A 2xx marks it ``sent``; anything else (another status, no answer within
    TIMEOUT_SECONDS, a URL refused now) counts an attempt and waits :func:`backoff_seconds`, or
    marks it ``failed`` after ``settings.notify_max_attempts``. Blocking: run it in a thread.
    """
    now = now or utcnow()
    due = s.scalars(
        select(Job).where(Job.notify_status == "pending", Job.notify_next_at <= now,
                          Job.status.in_(ENDED_STATUSES)).order_by(Job.notify_next_at)
    ).all()
    for job in due:
        try:
            failure = _post(s, job, settings)
        except Exception as exc:  # a row this code cannot read: an attempt failed, the others go on
            log.exception("notifying the end of job %s", job.id)
            s.rollback()
            failure = type(exc).__name__
        _record(job, failure, settings, now)
        s.commit()
    return len(due)
