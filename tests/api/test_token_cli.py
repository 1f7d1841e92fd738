import json
import re

import pytest
from typer.testing import CliRunner

from api.auth import authenticate
from api.cli import app
from api.db import make_engine, make_sessionmaker

runner = CliRunner()
TOKEN = re.compile(r"^(adf_[A-Za-z0-9_-]{40,})$", re.MULTILINE)


@pytest.fixture
def store_url(monkeypatch, tmp_path, db_url):
    """The token commands find the store through Settings: ADF_DATA_DIR, and ADF_DATABASE_URL when set."""
    monkeypatch.setenv("ADF_DATA_DIR", str(tmp_path / "data"))
    if db_url.startswith("sqlite"):
        monkeypatch.delenv("ADF_DATABASE_URL", raising=False)
        return f"sqlite:///{tmp_path / 'data' / 'jobs.db'}"
    monkeypatch.setenv("ADF_DATABASE_URL", db_url)
    return db_url


def user_of(url, token):
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as s:
            user = authenticate(s, token)
            return None if user is None else (user.name, user.is_admin)
    finally:
        engine.dispose()


def create(*args):
    result = runner.invoke(app, ["token", "create", *args])
    assert result.exit_code == 0, result.output
    return result


def test_token_create_prints_a_working_token_once(store_url):
    result = create("--user", "alice", "--admin")
    token = TOKEN.search(result.stdout).group(1)
    assert "will not be shown again" in result.output
    assert user_of(store_url, token) == ("alice", True)
    assert user_of(store_url, create("--user", "alice").stdout.strip()) == ("alice", True)


def test_token_list_shows_prefixes_not_tokens(store_url):
    token = create("--user", "alice").stdout.strip()
    create("--user", "bob")
    result = runner.invoke(app, ["token", "list"])
    assert result.exit_code == 0, result.output
    assert token[:12] in result.output and token not in result.output
    assert "alice" in result.output and "bob" in result.output


def test_token_list_json_has_one_entry_per_token(store_url):
    create("--user", "alice", "--admin")
    create("--user", "bob")
    listing = json.loads(runner.invoke(app, ["token", "list", "--json"]).stdout)
    assert [(t["user"], t["admin"], t["revoked_at"]) for t in listing] == [
        ("alice", True, None),
        ("bob", False, None),
    ]
    assert all(t["created_at"].endswith("+00:00") and t["prefix"].startswith("adf_") for t in listing)
    only_bob = json.loads(runner.invoke(app, ["token", "list", "--json", "--user", "bob"]).stdout)
    assert [t["user"] for t in only_bob] == ["bob"]


def test_token_revoke_disables_the_token(store_url):
    token = create("--user", "alice").stdout.strip()
    result = runner.invoke(app, ["token", "revoke", token[:12]])
    assert result.exit_code == 0, result.output
    assert "revoked 1 token" in result.output
    assert user_of(store_url, token) is None
    listing = json.loads(runner.invoke(app, ["token", "list", "--json"]).stdout)
    assert [(t["prefix"], t["revoked_at"] is not None) for t in listing] == [(token[:12], True)]


def test_token_revoke_of_an_unknown_prefix_is_an_error(store_url):
    result = runner.invoke(app, ["token", "revoke", "adf_nothing1"])
    assert result.exit_code == 2
    assert "no live token with prefix 'adf_nothing1'" in result.output


def test_token_create_refuses_a_bad_user_name(store_url):
    result = runner.invoke(app, ["token", "create", "--user", "a b"])
    assert result.exit_code == 2
    assert "error:" in result.output and "user name 'a b'" in result.output


def test_the_store_defaults_to_jobs_db_in_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ADF_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("ADF_DATABASE_URL", raising=False)
    create("--user", "alice")
    assert (tmp_path / "elsewhere" / "jobs.db").is_file()
