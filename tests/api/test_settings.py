from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def no_adf_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment: start every test from none of ours, HOME in tmp."""
    import os

    for name in list(os.environ):
        if name.startswith("ADF_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_settings_are_read_from_adf_prefixed_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("ADF_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ADF_PORT", "9001")
    monkeypatch.setenv("ADF_MAX_RUNNING_JOBS_PER_USER", "2")
    monkeypatch.setenv("ADF_RAY_ADDRESS", "http://head:8265")
    monkeypatch.setenv("PORT", "1234")  # unprefixed: not ours
    settings = Settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.port == 9001
    assert settings.max_running_jobs_per_user == 2
    assert settings.ray_address == "http://head:8265"


def test_defaults_keep_everything_under_the_expanded_data_dir(tmp_path):
    settings = Settings()
    assert settings.data_dir == tmp_path / "home" / ".adf-service"
    assert settings.db_url == f"sqlite:///{tmp_path / 'home' / '.adf-service' / 'jobs.db'}"
    assert settings.storage_dir == str(tmp_path / "home" / ".adf-service" / "runs")
    assert (settings.auth, settings.host, settings.port) == ("tokens", "127.0.0.1", 8000)
    assert (settings.max_grid_trials, settings.max_upload_bytes) == (2000, 65_536)
    assert settings.public_url is None and settings.ray_address is None


def test_database_url_and_storage_override_the_data_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ADF_DATABASE_URL", "postgresql+psycopg://adf@db/adf")
    monkeypatch.setenv("ADF_STORAGE", "~/shared/runs")
    settings = Settings(data_dir=tmp_path)
    assert settings.db_url == "postgresql+psycopg://adf@db/adf"
    assert settings.storage_dir == str(tmp_path / "home" / "shared" / "runs")


def test_a_storage_uri_is_kept_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setenv("ADF_STORAGE", "s3://bucket/adf/runs")
    assert Settings(data_dir=tmp_path).storage_dir == "s3://bucket/adf/runs"


def test_auth_accepts_only_tokens_or_local(monkeypatch):
    monkeypatch.setenv("ADF_AUTH", "none")
    with pytest.raises(ValidationError, match="auth"):
        Settings()


def test_check_bind_refuses_local_auth_on_a_public_address():
    settings = Settings(auth="local")
    with pytest.raises(SettingsError, match=r"auth 'local'.*'0\.0\.0\.0'"):
        settings.check_bind("0.0.0.0")
    with pytest.raises(SettingsError, match="loopback"):
        settings.check_bind("10.1.2.3")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_check_bind_allows_local_auth_on_loopback(host):
    Settings(auth="local").check_bind(host)


def test_check_bind_allows_token_auth_anywhere():
    Settings(auth="tokens").check_bind("0.0.0.0")


def test_every_setting_is_documented():
    undocumented = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undocumented == []
