"""The bad-input corpus over a real uvicorn server (issue 16 item 4): every hostile input of
tests/corpus/api/requests.json, one test per class, is a clear 4xx problem+json naming what is wrong,
answered within a second, while a thread asks /healthz every 50 ms the whole time and records its
longest answer (the stall), which must stay under a second too.

The server runs in this process (auth local, its own SQLite store, a Ray address nothing answers
at): nothing here gets as far as starting a job. The last test counts the corpus and prints the
figures for docs/reliability.md (``pytest -s``).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.testing import unrunnable_store
from tests.api.test_probe_defects import BASE_GRID, MEDIA, PATH_CASES, STORE_CASES, case_path, settings_at
from tests.helpers.served import served
from tests.trials.test_bad_grid_corpus import CASES as GRID_CASES
from tests.trials.test_bad_grid_corpus import case_text

pytestmark = pytest.mark.service  # a real uvicorn server

CORPUS = Path(__file__).parents[1] / "corpus"
CASES = json.loads((CORPUS / "api" / "requests.json").read_text(encoding="utf-8"))["cases"]
GRIDS = {case["file"]: case for case in GRID_CASES}
STORES = {case["name"]: case for case in STORE_CASES}
PATHS = {case["name"]: case for case in PATH_CASES}
ANSWER_SECONDS = 1.0  # each hostile input is answered within this
HEALTH_PERIOD = 0.05  # /healthz is asked this often
MIN_INPUTS = 50


@dataclass(frozen=True)
class Probe:
    """One hostile input as it goes on the wire, and what its answer must be."""

    name: str
    method: str
    url: str
    headers: dict[str, str]
    content: bytes
    statuses: tuple[int, ...]
    expect: str
    error_path: str | None = None
    chunked: bool = False
    raw: bool = False


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    seconds: float


def _case_name(case: dict) -> str:
    return case.get("name") or case.get("grid") or case.get("store") or case["path"]


def _grid_expect(case: dict) -> str:
    """The grid corpus' expected message as the service words it: its source is "request body"."""
    return re.sub(r"^(\S+\.(yaml|json) )?(line \d+: )?|^\S+\.(yaml|json): ", "", case["expect"])


def probe_of(case: dict) -> Probe:
    """The request a case of requests.json describes, its references to the other corpora resolved."""
    name = _case_name(case)
    if "grid" in case:
        grid = GRIDS[case["grid"]]
        return Probe(name, "POST", "/v1/jobs", {"content-type": MEDIA[Path(grid["file"]).suffix]},
                     case_text(grid).encode(), (400, 413, 422), _grid_expect(grid))
    if "store" in case:
        store = STORES[case["store"]]
        grid = BASE_GRID | {k: v for k, v in store.items() if k not in ("name", "path", "expect")}
        return Probe(name, "POST", "/v1/jobs", {"content-type": "application/json"},
                     json.dumps(grid).encode(), (422,), store["expect"], store["path"])
    if "path" in case:
        path = PATHS[case["path"]]
        method = "POST" if path["suffix"].endswith("/cancel") else "GET"
        expect = "could not be read" if path["layer"] == "http" else f"({path['times']:,} characters)"
        return Probe(name, method, case_path(path), {}, b"", (path["status"],), expect,
                     raw=path["layer"] == "http")
    headers = dict(case.get("headers", {}))
    if "json" in case:
        headers.setdefault("content-type", "application/json")
        content = json.dumps(case["json"]).encode()
    elif "body_file" in case:
        content = (CORPUS / case["body_file"]).read_bytes()
    elif "recipe" in case:
        content = case_text(case).encode()
    else:
        content = case.get("body", "").encode()
    return Probe(name, case["method"], case["url"], headers, content, (case["status"],), case["expect"],
                 case.get("error_path"), case.get("chunked", False), case.get("raw", False))


def raw_request(port: int, probe: Probe) -> tuple[int, str, bytes]:
    """The probe written to a socket as it is (no client normalises its path or checks its length):
    status, content type, body of the answer, read until the server closes."""
    head = f"{probe.method} {probe.url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in probe.headers.items())
    if probe.content and "content-length" not in probe.headers:
        head += f"content-length: {len(probe.content)}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head.encode() + b"\r\n" + probe.content)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    lines, _, body = rest.partition(b"\r\n\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.decode("latin-1").partition(":") for line in lines.split(b"\r\n"))}
    return int(status_line.split()[1]), headers.get("content-type", ""), body


def send(probe: Probe, port: int, client: httpx.Client) -> Answer:
    start = time.monotonic()
    if probe.raw:
        status, content_type, body = raw_request(port, probe)
    else:
        content = iter([probe.content]) if probe.chunked else probe.content  # an iterator: no length, chunked
        answer = client.request(probe.method, probe.url, headers=probe.headers, content=content)
        status, body = answer.status_code, answer.content
        content_type = answer.headers.get("content-type", "")
    return Answer(status, content_type, body, time.monotonic() - start)


@dataclass
class HealthWatch:
    """/healthz asked every HEALTH_PERIOD seconds from a thread of its own: how long each answer took."""

    url: str
    took: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                try:
                    status = client.get(self.url).status_code
                    if status != 200:
                        self.failures.append(f"/healthz answered {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"/healthz: {type(exc).__name__}: {exc}")
                self.took.append(time.monotonic() - start)
                self.stop.wait(HEALTH_PERIOD)

    def longest_since(self, mark: int) -> float:
        """The longest /healthz answer among those asked since ``mark`` (a len(took)), once the one in
        flight now has come back too: a stall still going on is counted."""
        count = len(self.took)
        deadline = time.monotonic() + 30
        while len(self.took) <= count and time.monotonic() < deadline:
            time.sleep(0.01)
        return max(self.took[mark:], default=0.0)


@dataclass
class Service:
    port: int
    client: httpx.Client
    health: HealthWatch


@dataclass
class ClassFigures:
    tried: int
    four_xx: int
    stall: float


FIGURES: dict[str, ClassFigures] = {}  # filled by the class tests, printed by the last test


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[Service]:
    """The app under a real uvicorn on 127.0.0.1 (the service's HTTP protocol), with a symlink to /etc
    and a store (`unrunnable-store`) in its data_dir, and /healthz watched from a thread."""
    data_dir = tmp_path_factory.mktemp("hostile")
    (data_dir / "link-to-etc").symlink_to("/etc")
    unrunnable_store(data_dir)
    with served(create_app(settings_at(data_dir))) as port, httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        base = f"http://127.0.0.1:{port}"
        client.get("/healthz")  # its first answer imports Ray's Jobs API client: not a stall of the service
        client.post("/v1/jobs", json=BASE_GRID)  # the grid reader's first use: its imports
        client.get("/v1/compare", params={"jobs": "x"})  # the first comparison imports matplotlib
        health = HealthWatch(f"{base}/healthz")
        watcher = threading.Thread(target=health.run, daemon=True)
        watcher.start()
        yield Service(port, client, health)
        health.stop.set()
        watcher.join(timeout=30)


def cases_of(kind: str) -> list:
    return [pytest.param(case, id=_case_name(case)) for case in CASES if case["class"] == kind]


def refusal_problems(probe: Probe, answer: Answer) -> list[str]:
    """What is wrong with ``answer`` as the refusal of ``probe``; empty when it is a clear, quick 4xx."""
    if answer.status not in probe.statuses:
        return [f"answered {answer.status}, not {probe.statuses}: {answer.body[:300]!r}"]
    problems = []
    if answer.seconds >= ANSWER_SECONDS:
        problems.append(f"answered after {answer.seconds:.2f} s")
    if answer.content_type != "application/problem+json":
        return problems + [f"content type {answer.content_type!r}, not problem+json"]
    if len(answer.body) >= 20_000:
        problems.append(f"an answer of {len(answer.body):,} bytes")
    problem = json.loads(answer.body)
    errors = problem.get("errors") or []
    said = problem["detail"] + "".join(f"\n{e['path']}: {e['message']}" for e in errors)
    if probe.expect not in said:
        problems.append(f"{probe.expect!r} not in {said[:400]!r}")
    if probe.error_path is not None and probe.error_path not in [e["path"] for e in errors]:
        problems.append(f"no error at {probe.error_path!r}: {errors}")
    return problems


def check_class_case(case: dict, service: Service, kind: str) -> None:
    """One case of a class (its figures are those of the cases run so far)."""
    mark = len(service.health.took)
    probe = probe_of(case)
    answer = send(probe, service.port, service.client)
    stall = service.health.longest_since(mark)
    seen = FIGURES.setdefault(kind, ClassFigures(0, 0, 0.0))
    four_xx = seen.four_xx + (400 <= answer.status < 500)
    FIGURES[kind] = ClassFigures(seen.tried + 1, four_xx, max(seen.stall, stall))
    problems = refusal_problems(probe, answer)
    assert not problems, problems
    assert not service.health.failures, service.health.failures
    assert stall < ANSWER_SECONDS, f"/healthz took {stall:.2f} s to answer while {probe.name} was sent"


@pytest.mark.parametrize("case", cases_of("deep_nesting"))
def test_deep_nesting_is_refused_at_64_levels(case, service):
    check_class_case(case, service, "deep_nesting")


@pytest.mark.parametrize("case", cases_of("alias_bombs"))
def test_an_alias_bomb_is_refused_at_its_first_alias(case, service):
    check_class_case(case, service, "alias_bombs")


@pytest.mark.parametrize("case", cases_of("yaml_tags"))
def test_a_yaml_tag_builds_no_object_and_runs_nothing(case, service):
    check_class_case(case, service, "yaml_tags")
    assert not Path("/tmp/adf-pwned").exists()  # what yaml_python_object.yaml's os.system would make


@pytest.mark.parametrize("case", cases_of("huge_numbers"))
def test_huge_and_non_finite_numbers_are_refused_by_their_bound(case, service):
    check_class_case(case, service, "huge_numbers")


@pytest.mark.parametrize("case", cases_of("wrong_types"))
def test_a_value_of_the_wrong_type_is_refused_not_coerced(case, service):
    check_class_case(case, service, "wrong_types")


@pytest.mark.parametrize("case", cases_of("duplicate_keys"))
def test_a_key_given_twice_is_refused(case, service):
    check_class_case(case, service, "duplicate_keys")


@pytest.mark.parametrize("case", cases_of("odd_unicode"))
def test_odd_unicode_is_refused_by_name(case, service):
    check_class_case(case, service, "odd_unicode")


INVISIBLE = ("\u202e", "\u200b", "\x00", "\x1b")  # a bidi override, a zero-width space, NUL, ESC
RAW_KEYS = ["rtl_override_key.yaml", "zero_width_key.yaml", "json_zero_width_key.json"]  # named escaped (yamldoc.dotted)


@pytest.mark.parametrize("grid", RAW_KEYS)
def test_a_key_with_a_bidi_override_or_an_invisible_character_is_named_escaped(grid, service):
    answer = send(probe_of({"class": "odd_unicode", "grid": grid}), service.port, service.client)
    assert answer.status == 422
    detail = json.loads(answer.body)["detail"]
    assert not any(character in detail for character in INVISIBLE), detail


def test_odd_unicode_in_a_value_or_an_id_is_named_escaped(service):
    """Names, stores, ids and users: their odd characters come back as escapes, never as themselves."""
    for case in CASES:
        if case["class"] != "odd_unicode" or case.get("grid") in RAW_KEYS:
            continue
        answer = send(probe_of(case), service.port, service.client)
        detail = json.loads(answer.body)["detail"]
        assert not any(character in detail for character in INVISIBLE), (_case_name(case), detail)


@pytest.mark.parametrize("case", cases_of("path_escapes"))
def test_a_path_out_of_the_data_roots_is_refused(case, service):
    check_class_case(case, service, "path_escapes")


@pytest.mark.parametrize("case", cases_of("oversized_bodies"))
def test_an_oversized_body_or_header_is_refused(case, service):
    check_class_case(case, service, "oversized_bodies")


@pytest.mark.parametrize("case", cases_of("wrong_content_types"))
def test_a_body_of_a_content_type_other_than_json_or_yaml_is_refused(case, service):
    check_class_case(case, service, "wrong_content_types")


@pytest.mark.parametrize("case", cases_of("bad_pagination"))
def test_bad_pagination_and_filters_are_refused_by_parameter(case, service):
    check_class_case(case, service, "bad_pagination")


@pytest.mark.parametrize("case", cases_of("bad_ids"))
def test_an_id_no_service_makes_is_a_short_4xx(case, service):
    check_class_case(case, service, "bad_ids")


def test_the_corpus_holds_at_least_50_inputs_every_grid_of_it_classed_and_its_figures_are_printed():
    """Run last (``pytest -s``): the figures of the class tests above, for docs/reliability.md."""
    classed = {case["grid"] for case in CASES if "grid" in case}
    assert classed == set(GRIDS), f"grids of cases.json in no class of requests.json: {set(GRIDS) - classed}"
    assert all(case.get("store", "") in STORES or "store" not in case for case in CASES)
    assert all(case.get("path", "") in PATHS or "path" not in case for case in CASES)
    assert len(CASES) >= MIN_INPUTS and len({_case_name(case) for case in CASES}) == len(CASES)
    kinds = sorted({case["class"] for case in CASES})
    print(f"\nbad-input corpus: {len(CASES)} inputs in {len(kinds)} classes")
    for kind in kinds:
        figures = FIGURES.get(kind)
        total = sum(case["class"] == kind for case in CASES)
        print(f"  {kind:20} {total:4} inputs" + ("" if figures is None else
              f", {figures.tried} tried, {figures.four_xx} answered 4xx, "
              f"longest /healthz {figures.stall * 1000:.0f} ms"))
    if FIGURES:
        tried = sum(f.tried for f in FIGURES.values())
        four_xx, stall = sum(f.four_xx for f in FIGURES.values()), max(f.stall for f in FIGURES.values())
        print(f"  all: {tried} tried, {four_xx} answered 4xx, longest /healthz answer {stall * 1000:.0f} ms")
