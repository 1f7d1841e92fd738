"""DNS rebinding (issue 16 item 5, docs/security.md): the server answers only the Host names it is
configured for; in local mode (no tokens, everyone the admin) by default the loopback names alone.

A real uvicorn on 127.0.0.1 (tests/helpers/served.py) over a real SQLite store: the request is what a
browser sends after a page's DNS answer switched to 127.0.0.1, the page's own name in Host.
"""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.hosts import host_name
from api.settings import Settings
from api.testing import UNRUNNABLE_GRID, unrunnable_store
from tests.helpers.served import served

NOWHERE = "http://127.0.0.1:1"  # a Ray dashboard address nothing answers at


def serve(tmp_path, **settings):
    unrunnable_store(tmp_path)
    return served(create_app(Settings(data_dir=tmp_path, ray_address=NOWHERE, max_grid_trials=8, **settings),
                             reconcile_every=3600))


@pytest.mark.parametrize(("header", "name"), [
    ("127.0.0.1:8000", "127.0.0.1"), ("[::1]:8000", "::1"), ("[::1]", "::1"), ("LocalHost", "localhost"),
    ("evil.example:80", "evil.example"), ("::1", "::1"), ("", ""),
])
def test_a_host_header_is_read_without_its_port(header, name):
    assert host_name(header) == name


def test_local_mode_refuses_a_page_whose_dns_rebound_to_this_machine_and_keeps_no_job(tmp_path):
    with serve(tmp_path, auth="local") as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        rebound = {"Host": f"attacker.example:{port}"}
        answer = client.post("/v1/jobs", json=UNRUNNABLE_GRID, headers=rebound)
        assert answer.status_code == 421, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "'attacker.example:" in answer.json()["detail"] and "DNS rebinding" in answer.json()["detail"]
        assert client.get("/healthz", headers=rebound).status_code == 421
        # Nothing was stored, and the loopback names are answered as usual
        assert client.get("/v1/jobs").json()["total"] == 0
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200, host
        assert client.post("/v1/jobs", json=UNRUNNABLE_GRID).status_code == 202
        assert client.get("/v1/jobs").json()["total"] == 1


def test_an_odd_host_header_is_named_escaped(tmp_path):
    with serve(tmp_path, auth="local") as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        answer = client.get("/healthz", headers={"Host": "evil\u202e.example".encode()})
        assert answer.status_code == 421
        detail = answer.json()["detail"]  # the header's bytes (UTF-8 of U+202E), escaped
        assert detail.isascii() and detail.isprintable() and "'evil\\xe2\\x80\\xae.example'" in detail, detail


def test_with_tokens_any_host_is_answered_unless_allowed_hosts_names_them(tmp_path):
    with serve(tmp_path / "a", auth="tokens") as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz", headers={"Host": "adf.example.org"}).status_code == 200
        assert client.get("/v1/jobs", headers={"Host": "adf.example.org"}).status_code == 401  # the token guards
    named = {"auth": "tokens", "allowed_hosts": ["adf.example.org"]}
    with serve(tmp_path / "b", **named) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz", headers={"Host": "adf.example.org:443"}).status_code == 200
        assert client.get("/healthz").status_code == 421  # 127.0.0.1 is not named
    with serve(tmp_path / "c", auth="local", allowed_hosts=["*"]) as port, \
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        assert client.get("/healthz", headers={"Host": "anything.example"}).status_code == 200


def test_allowed_hosts_come_from_the_environment_as_a_json_list(monkeypatch, tmp_path):
    monkeypatch.setenv("ADF_ALLOWED_HOSTS", '["adf.example.org", "10.0.0.5"]')
    assert Settings(data_dir=tmp_path).answered_hosts() == ["adf.example.org", "10.0.0.5"]
    monkeypatch.delenv("ADF_ALLOWED_HOSTS")
    assert Settings(data_dir=tmp_path, auth="local").answered_hosts() == ["127.0.0.1", "localhost", "::1"]
    assert Settings(data_dir=tmp_path, auth="tokens").answered_hosts() is None
