"""A typed client of the REST service: ``ServiceClient(server, token).submit(grid_text)``.

Where the server and the token come from (``resolve_connection``), first found wins:
flags, then ``ADF_SERVER`` / ``ADF_TOKEN``, then the client config file
(``$ADF_CLIENT_CONFIG``, else ``~/.config/adf-service/client.toml``; keys ``server`` and
``token``), then ``http://127.0.0.1:8000`` and no token.
"""

from __future__ import annotations

import io
import os
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

__all__ = [
    "DEFAULT_SERVER", "ClientConfigError", "Connection", "ServiceClient", "ServiceError", "config_path",
    "resolve_connection",
]

DEFAULT_SERVER = "http://127.0.0.1:8000"
CONFIG_ENV = "ADF_CLIENT_CONFIG"
SERVER_ENV = "ADF_SERVER"
TOKEN_ENV = "ADF_TOKEN"
CONFIG_KEYS = ("server", "token")
TOKEN_HINT = (
    "pass a token with --token, the ADF_TOKEN environment variable or `token = \"...\"` in the client "
    "config file; an admin of the server issues one with `adf-service token create --user NAME`"
)

ResultFormat = Literal["json", "csv", "parquet"]


class ClientConfigError(ValueError):
    """A client config file that cannot be read or holds an unknown key."""


class ServiceError(Exception):
    """A request the service refused (its problem+json answer), or a server that did not answer.

    ``status`` is None when no HTTP answer came (the server is unreachable or timed out);
    ``errors`` holds one ``{"path", "message", "line"}`` per bad field of a rejected grid,
    and ``source`` names what the lines refer to (e.g. the grid.yaml a submit sent).
    """

    def __init__(self, status: int | None, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
                 *, source: str | None = None):
        self.status, self.title, self.detail, self.errors, self.source = status, title, detail, errors or [], source
        super().__init__(str(self))

    def __str__(self) -> str:
        detail = self.detail
        if self.errors and ": " in detail:
            detail = detail.split(": ", 1)[0]  # the server's detail repeats the errors listed below
        head = f"{self.status} {self.title}: {detail}" if self.status else detail
        lines = [head]
        for e in self.errors:
            where = f"{self.source or 'line'} line {e['line']}" if e.get("line") else (self.source or "")
            field = e.get("path") or "grid"
            lines.append(f"  {where + ': ' if where else ''}{field}: {e.get('message', '')}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Connection:
    """The server and token a client uses, and where each came from (for messages)."""

    server: str
    token: str | None
    server_from: str
    token_from: str | None


def config_path() -> Path:
    """The client config file: ``$ADF_CLIENT_CONFIG``, else ``~/.config/adf-service/client.toml``."""
    named = os.environ.get(CONFIG_ENV)
    return Path(named).expanduser() if named else Path("~/.config/adf-service/client.toml").expanduser()


def read_config(path: Path) -> dict[str, str]:
    """The ``server`` and ``token`` of a client config file; {} if there is no file."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ClientConfigError(f"{path}: cannot read the client config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClientConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ClientConfigError(f"{path}: unknown key {', '.join(map(repr, unknown))}; "
                                f"a client config has {', '.join(CONFIG_KEYS)}")
    wrong = [k for k, v in data.items() if not isinstance(v, str)]
    if wrong:
        raise ClientConfigError(f"{path}: {wrong[0]!r} must be a string, got {type(data[wrong[0]]).__name__}")
    return data


def resolve_connection(server: str | None = None, token: str | None = None) -> Connection:
    """Flags (the arguments), then ADF_SERVER / ADF_TOKEN, then the config file, then the defaults."""
    path = config_path()
    config: dict[str, str] | None = None

    def pick(flag: str | None, env: str, key: str) -> tuple[str | None, str | None]:
        nonlocal config
        if flag:
            return flag, f"--{key}"
        if os.environ.get(env):
            return os.environ[env], f"the {env} environment variable"
        if config is None:
            config = read_config(path)
        if config.get(key):
            return config[key], str(path)
        return None, None

    found_server, server_from = pick(server, SERVER_ENV, "server")
    found_token, token_from = pick(token, TOKEN_ENV, "token")
    return Connection(found_server or DEFAULT_SERVER, found_token, server_from or "the default", token_from)


class ServiceClient:
    """The REST API of one adf-service server; every method raises :class:`ServiceError` on failure.

    Args:
        server: base URL, e.g. ``http://127.0.0.1:8000``.
        token: bearer token (``adf-service token create``), or None.
        timeout: seconds to wait for an answer.
        transport: an httpx transport (tests); default: one that retries refused connections twice.
        token_from: where the token came from, named in a 401's message.
    """

    def __init__(self, server: str, token: str | None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None, token_from: str | None = None):
        self.server = server.rstrip("/")
        self.token_from = token_from
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout,
                                  transport=transport or httpx.HTTPTransport(retries=2))

    @classmethod
    def from_connection(cls, connection: Connection, **kwargs: Any) -> ServiceClient:
        return cls(connection.server, connection.token, token_from=connection.token_from, **kwargs)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def job_url(self, job_id: str) -> str:
        return f"{self.server}{_job_path(job_id)}"

    # --- jobs ---------------------------------------------------------------------------

    def submit(self, grid_text: str, *, idempotency_key: str | None = None, source: str | None = None) -> dict:
        """Submit grid.yaml's text; the server validates it (a bad grid's errors name ``source``'s lines).

        One Idempotency-Key goes with every try, so a retry after a lost answer never makes two jobs.
        """
        headers = {"Content-Type": "application/yaml", "Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return self._json("POST", "/v1/jobs", content=grid_text.encode(), headers=headers, source=source, tries=2)

    def list_jobs(self, status: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        """A page of your jobs, newest first: ``{"items", "total", "limit", "offset"}``."""
        return self._json("GET", "/v1/jobs", params=_params(status=status, limit=limit, offset=offset))

    def job(self, job_id: str) -> dict:
        return self._json("GET", _job_path(job_id))

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"{_job_path(job_id)}/cancel")

    def resume(self, job_id: str) -> dict:
        return self._json("POST", f"{_job_path(job_id)}/resume")

    def rerun(self, job_id: str) -> dict:
        return self._json("POST", f"{_job_path(job_id)}/rerun", params={"failed": "true"})

    def extend(self, job_id: str, repeats: int) -> dict:
        return self._json("POST", f"{_job_path(job_id)}/extend", params={"repeats": repeats})

    # --- results ------------------------------------------------------------------------

    def trials(self, job_id: str, **filters: Any) -> dict:
        """A page of trial rows; filters: stage, operators, discretization, n_inputs, n_cells, status, limit, offset."""
        return self._json("GET", f"{_job_path(job_id)}/trials", params=_params(**filters))

    def results(self, job_id: str, format: ResultFormat = "json", stage: str | None = None) -> bytes | list:
        """Every result row: a list of dicts for json, the file's bytes for csv and parquet."""
        answer = self._send("GET", f"{_job_path(job_id)}/results", params=_params(format=format, stage=stage))
        return answer.json() if format == "json" else answer.content

    def epochs(self, job_id: str, format: ResultFormat = "json", stage: str | None = None) -> bytes | list:
        """Every trial-epoch of the job: a list of dicts for json, the file's bytes for csv and parquet."""
        answer = self._send("GET", f"{_job_path(job_id)}/epochs", params=_params(format=format, stage=stage))
        return answer.json() if format == "json" else answer.content

    def best_export(self, job_id: str) -> dict[str, bytes]:
        """The best genotype's export (genotype.json, model.pt, metrics.json): file name → bytes."""
        import zipfile

        answer = self._send("GET", f"{_job_path(job_id)}/best/export")
        with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}

    def report(self, job_id: str) -> bytes:
        """The job's report: one self-contained HTML page."""
        return self._send("GET", f"{_job_path(job_id)}/report").content

    def compare(self, job_ids: list[str], format: str = "json") -> bytes | dict:
        """Jobs side by side: a dict for json, the page's or the table's bytes for html and csv."""
        answer = self._send("GET", "/v1/compare", params={"jobs": list(job_ids), "format": format})
        return answer.json() if format == "json" else answer.content

    def best(self, job_id: str) -> dict:
        """The best evaluated genotype, its metrics, and BOHB's best configuration."""
        return self._json("GET", f"{_job_path(job_id)}/best")

    def logs(self, job_id: str, follow: bool = False) -> Iterator[str]:
        """The job's driver log as text chunks: what it holds now, or (``follow``) all of it and then
        each new chunk as the driver writes it, until the job ends (no read timeout then)."""
        path = f"{_job_path(job_id)}/logs"
        timeout = httpx.Timeout(self._http.timeout.connect, read=None) if follow else self._http.timeout
        try:
            with self._http.stream("GET", path, params=_params(follow=follow or None), timeout=timeout) as answer:
                if not answer.is_success:
                    answer.read()
                    raise self._problem(answer, None)
                yield from answer.iter_text()
        except httpx.TransportError as exc:
            raise ServiceError(None, "No answer", f"GET {self.server}{path}: {type(exc).__name__}: "
                               f"{str(exc) or 'no answer'}") from None

    def notify_secret(self, rotate: bool = False) -> str:
        """Your key for checking the signatures of your jobs' notifications; ``rotate``: a new one."""
        return self._json("POST" if rotate else "GET", "/v1/me/notify-secret")["secret"]

    def usage(self, user: str | None = None, since: str | None = None) -> dict:
        """GPU- and CPU-hours per job and user: yours, or ``user``'s (admins), since an ISO date (default: 30 days
        ago)."""
        return self._json("GET", "/v1/usage", params=_params(user=user, since=since))

    def healthz(self) -> dict:
        return self._json("GET", "/healthz")

    # --- transport ----------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, *, source: str | None = None, tries: int = 1,
              **kwargs: Any) -> httpx.Response:
        """One request; ``tries`` > 1 repeats it when the answer was lost (only safe for idempotent ones)."""
        for attempt in range(1, tries + 1):
            try:
                answer = self._http.request(method, path, **kwargs)
                break
            except httpx.ConnectError as exc:
                raise ServiceError(None, "Unreachable", f"cannot reach the adf-service server at {self.server} "
                                   f"({exc}): is it running? Start one with `adf-service serve`, or name "
                                   "another with --server or ADF_SERVER") from None
            except httpx.TransportError as exc:  # sent, but no answer came back
                if attempt == tries:
                    raise ServiceError(None, "No answer", f"{method} {self.server}{path}: no answer "
                                       f"({type(exc).__name__}: {str(exc) or 'timed out'})") from None
        if answer.is_success:
            return answer
        raise self._problem(answer, source)

    def _problem(self, answer: httpx.Response, source: str | None) -> ServiceError:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):  # not the service's problem+json: a proxy, another server
            text = " ".join(answer.text.split())[:300] or "(no body)"
            return ServiceError(answer.status_code, answer.reason_phrase, f"{answer.request.url}: {text}")
        detail = str(body.get("detail", ""))
        if answer.status_code == 401:
            used = f" (the token came from {self.token_from})" if self.token_from else ""
            detail = f"{detail}{used}; {TOKEN_HINT}"
        return ServiceError(answer.status_code, str(body.get("title") or answer.reason_phrase), detail,
                            body.get("errors"), source=source)


def _job_path(job_id: str) -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}"


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
