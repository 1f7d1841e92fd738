"""The REST client's commands against the live service (a real uvicorn server and a local Ray),
run through typer's CliRunner; one job, submitted with --wait, serves every read-only test."""

import json
import re
import subprocess
import time
import uuid

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.client import DEFAULT_SERVER, ClientConfigError, ServiceClient, resolve_connection
from api.testing import ADF
from tests.api.live import free_port, tiny_grid

pytestmark = pytest.mark.timeout(300)  # a job that never ends fails here, not at the suite's 600 s
runner = CliRunner()
CLEAN_ENV = ("ADF_SERVER", "ADF_TOKEN", "ADF_CLIENT_CONFIG")


def adf(*args: str, env: dict[str, str] | None = None, config=None):
    """Run `adf-service ARGS` with only ``env`` and ``config`` (a client.toml path) as the client's sources."""
    isolated = {name: None for name in CLEAN_ENV}
    isolated["ADF_CLIENT_CONFIG"] = str(config) if config else "/nonexistent/client.toml"
    return runner.invoke(app, [str(a) for a in args], env={**isolated, "COLUMNS": "200", **(env or {})})


@pytest.fixture(scope="module")
def alice(live):
    return live.token("alice")


@pytest.fixture(scope="module")
def bob(live):
    return live.token("bob")


@pytest.fixture(scope="module")
def as_alice(live, alice):
    return ["--server", live.url, "--token", alice]


@pytest.fixture(scope="module")
def finished(as_alice, store, tmp_path_factory):
    """One tiny grid submitted with --wait: (its job id, the command's result)."""
    grid = tmp_path_factory.mktemp("grids") / "grid.yaml"
    grid.write_text(tiny_grid(store, name="cli"))
    result = adf("submit", grid, "--wait", *as_alice)
    assert result.exit_code == 0, result.output
    return re.search(r"/v1/jobs/(j[0-9a-f]+)", result.stdout).group(1), result


def cells(text: str) -> str:
    """A rich table's text with its column rules blanked, for regexes over a row."""
    return re.sub("[│┃]", " ", text)


def write_config(path, **keys):
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def test_submit_wait_prints_the_job_url_and_a_summary_with_every_stage_and_the_best_genotype(live, finished):
    job, result = finished
    assert f"{live.url}/v1/jobs/{job}" in result.stdout
    summary = result.stdout[result.stdout.index(f"job {job} 'cli': succeeded"):]
    for stage in ("baselines", "search"):
        assert re.search(rf"{stage}\s+1\s+1\s+0\s+0\s+0\s+[\d.]+%", cells(summary)), summary
    assert re.search(r"best genotype: trial \S+ \(S2 all I=1 cells=1\), test top-1 [\d.]+%, [\d,]+ fusion params",
                     summary)


def test_list_shows_the_job_with_its_trials_done_and_filters_by_status(finished, as_alice):
    job, _ = finished
    table = adf("list", *as_alice)
    assert table.exit_code == 0, table.output
    row = rf"{job}\s+cli\s+succeeded\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\s+2/2"
    assert re.search(row, cells(table.stdout)), table.stdout
    page = json.loads(adf("list", "--json", *as_alice).stdout)
    assert job in [j["id"] for j in page["items"]]
    failed = json.loads(adf("list", "--status", "failed", "--json", *as_alice).stdout)
    assert job not in [j["id"] for j in failed["items"]]


def test_status_shows_timestamps_the_ray_job_its_dashboard_and_progress_per_stage(finished, as_alice):
    job, _ = finished
    answer = json.loads(adf("status", job, "--json", *as_alice).stdout)
    shown = adf("status", job, *as_alice)
    assert shown.exit_code == 0, shown.output
    assert answer["status"] == "succeeded" and answer["ray_job_id"] == f"{job}-1"
    for fact in ("succeeded", answer["ray_job_id"], answer["dashboard_url"], "progress per stage", "baselines"):
        assert fact in shown.stdout
    assert re.search(r"ended\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown.stdout)


def test_results_as_a_table_json_csv_and_parquet_to_a_file(finished, as_alice, tmp_path):
    job, _ = finished
    table = adf("results", job, *as_alice)
    assert table.exit_code == 0 and f"job {job}: 3 result rows" in table.stdout
    assert all(stage in table.stdout for stage in ("baselines", "search", "evaluation"))
    rows = json.loads(adf("results", job, "-o", "-", *as_alice).stdout)
    assert sorted(r["stage"] for r in rows) == ["baselines", "evaluation", "search"]
    csv_lines = adf("results", job, "--format", "csv", "--stage", "search", *as_alice).stdout.splitlines()
    assert csv_lines[0].startswith("job,stage,trial_id") and len(csv_lines) == 2
    out = tmp_path / "rows.parquet"
    wrote = adf("results", job, "--format", "parquet", "-o", out, *as_alice)
    assert wrote.exit_code == 0, wrote.output
    read_back = pq.read_table(out)
    assert read_back.num_rows == 3 and set(read_back.column("job").to_pylist()) == {job}


def test_parquet_without_an_output_file_is_refused_before_any_request(finished):
    refused = adf("results", finished[0], "--format", "parquet", "--server", f"http://127.0.0.1:{free_port()}")
    assert refused.exit_code == 2 and "-o FILE" in refused.stderr


def test_best_prints_the_genotypes_cells_its_metrics_and_that_bohb_did_not_run(finished, as_alice):
    job, _ = finished
    answer = json.loads(adf("best", job, "--json", *as_alice).stdout)
    shown = adf("best", job, *as_alice)
    assert shown.exit_code == 0, shown.output
    assert answer["trial"]["stage"] == "evaluation" and answer["bohb"] is None
    assert f"best genotype from trial {answer['trial']['trial_id']}" in shown.stdout
    assert "cell 0: output = concat" in shown.stdout and "node0 = sum[in0 (stem) →" in shown.stdout
    metrics = cells(shown.stdout)
    assert re.search(r"test top-1\s+[\d.]+%", metrics) and re.search(r"fusion params\s+[\d,]+", metrics)
    assert "BOHB: did not run" in shown.stdout


def test_cancelling_or_resuming_a_finished_job_fails_with_the_servers_409(finished, as_alice):
    job, _ = finished
    for command in ("cancel", "resume"):
        refused = adf(command, job, *as_alice)
        assert refused.exit_code == 2, refused.output
        assert "409 Conflict" in refused.stderr and "succeeded" in refused.stderr


def test_an_invalid_grid_lists_each_bad_field_with_the_files_line(store, as_alice, tmp_path):
    grid = tmp_path / "bad.yaml"
    grid.write_text(tiny_grid(store).replace("repeats: 1", "repeats: 0"))
    refused = adf("submit", grid, *as_alice)
    assert refused.exit_code == 2
    assert "422 Unprocessable content: the grid does not validate" in refused.stderr
    assert f"{grid} line 5: repeats:" in refused.stderr


def test_a_missing_grid_file_is_a_local_error_naming_it(tmp_path):
    missing = tmp_path / "nope.yaml"
    refused = adf("submit", missing, "--server", f"http://127.0.0.1:{free_port()}")
    assert refused.exit_code == 2 and f"{missing}: cannot read the grid" in refused.stderr
    assert "cannot reach" not in refused.stderr


def test_no_token_or_a_bad_token_says_how_to_pass_one(finished, live):
    job, _ = finished
    bad = adf("status", job, "--server", live.url, "--token", "adf_not-a-token")
    assert bad.exit_code == 2
    assert "401 Unauthorized: the bearer token is unknown or revoked (the token came from --token)" in bad.stderr
    assert "ADF_TOKEN" in bad.stderr and "adf-service token create" in bad.stderr
    none = adf("list", "--server", live.url)
    assert none.exit_code == 2 and "401 Unauthorized: no bearer token" in none.stderr


def test_an_unreachable_server_says_so_and_how_to_start_one():
    url = f"http://127.0.0.1:{free_port()}"
    refused = adf("list", "--server", url, "--token", "t")
    assert refused.exit_code == 2
    assert f"cannot reach the adf-service server at {url}" in refused.stderr
    assert "adf-service serve" in refused.stderr


def test_flags_beat_environment_variables_which_beat_the_config_file(finished, live, alice, bob, tmp_path):
    job, _ = finished
    nowhere = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "client.toml", server=nowhere, token="adf_from-the-config-file")

    only_config = adf("status", job, config=config)
    assert f"cannot reach the adf-service server at {nowhere}" in only_config.stderr
    env_server = adf("status", job, config=config, env={"ADF_SERVER": live.url})
    assert "unknown or revoked" in env_server.stderr and str(config) in env_server.stderr
    env_token = adf("status", job, "--json", config=config, env={"ADF_SERVER": live.url, "ADF_TOKEN": alice})
    assert env_token.exit_code == 0 and json.loads(env_token.stdout)["owner"] == "alice"
    flag_token = adf("status", job, "--token", bob, config=config, env={"ADF_SERVER": live.url, "ADF_TOKEN": alice})
    assert flag_token.exit_code == 2 and "404 Not found" in flag_token.stderr  # bob's token: not his job
    flag_server = adf("status", job, "--server", nowhere, env={"ADF_SERVER": live.url, "ADF_TOKEN": alice})
    assert f"cannot reach the adf-service server at {nowhere}" in flag_server.stderr

    whole_config = write_config(tmp_path / "alice.toml", server=live.url, token=alice)
    assert json.loads(adf("status", job, "--json", config=whole_config).stdout)["owner"] == "alice"


def test_without_flags_environment_or_config_the_client_uses_the_local_default(monkeypatch, tmp_path):
    for name in CLEAN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADF_CLIENT_CONFIG", str(tmp_path / "absent.toml"))
    connection = resolve_connection()
    assert (connection.server, connection.token, connection.server_from) == (DEFAULT_SERVER, None, "the default")


@pytest.mark.parametrize(("text", "says"), [
    ("server = ", "not valid TOML"),
    ('server = "http://x"\ntokn = "t"\n', "unknown key 'tokn'; a client config has server, token"),
    ("token = 3\n", "'token' must be a string, got int"),
])
def test_a_bad_config_file_is_an_error_naming_it(monkeypatch, tmp_path, text, says):
    config = tmp_path / "client.toml"
    config.write_text(text)
    monkeypatch.delenv("ADF_SERVER", raising=False)
    monkeypatch.delenv("ADF_TOKEN", raising=False)
    monkeypatch.setenv("ADF_CLIENT_CONFIG", str(config))
    with pytest.raises(ClientConfigError, match=re.escape(f"{config}: ")) as raised:
        resolve_connection()
    assert says in str(raised.value)
    assert says in adf("list", config=config).stderr


def test_a_submit_whose_answer_was_lost_is_sent_again_with_the_same_idempotency_key():
    sent = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) == 1:
            raise httpx.ReadTimeout("lost", request=request)
        return httpx.Response(202, json={"id": "j1"})

    with ServiceClient("http://service", "t", transport=httpx.MockTransport(server)) as client:
        assert client.submit("name: x\n") == {"id": "j1"}
    keys = {r.headers["Idempotency-Key"] for r in sent}
    assert len(sent) == 2 and len(keys) == 1 and uuid.UUID(keys.pop()).version == 4
    assert all(r.headers["Content-Type"] == "application/yaml" and r.content == b"name: x\n" for r in sent)


def test_ctrl_c_while_waiting_stops_waiting_only_and_the_job_can_be_cancelled(store, as_alice, tmp_path,
                                                                             monkeypatch):
    def interrupt(self, job_id):
        raise KeyboardInterrupt

    grid = tmp_path / "grid.yaml"
    grid.write_text(tiny_grid(store, name="interrupted", epochs=30))
    monkeypatch.setattr(ServiceClient, "job", interrupt)  # Ctrl-C at the first poll
    waited = adf("submit", grid, "--wait", *as_alice)
    monkeypatch.undo()
    assert waited.exit_code == 130, waited.output
    job = re.search(r"/v1/jobs/(j[0-9a-f]+)", waited.stdout).group(1)
    assert f"job {job} keeps running on the server" in waited.stderr and f"adf-service status {job}" in waited.stderr
    assert json.loads(adf("status", job, "--json", *as_alice).stdout)["status"] in ("queued", "running")
    cancelled = adf("cancel", job, *as_alice)
    assert cancelled.exit_code == 0 and f"job {job}: cancelled" in cancelled.stdout


def test_a_job_over_the_users_quota_shows_why_it_waits_and_goes_once_the_quota_allows(live, store, tmp_path):
    """The queue end to end: `user quota` on the server's store, two submissions, `status` of the waiting one."""
    def quota(*args: str) -> str:
        done = subprocess.run([ADF, "user", "quota", "carol", *args], env=live.env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    carol = ["--server", live.url, "--token", live.token("carol")]
    assert "carol: 1 jobs at once" in quota("--running-jobs", "1")
    grid = tmp_path / "grid.yaml"
    ids = []
    for name in ("first", "second"):
        grid.write_text(tiny_grid(store, name=name, epochs=200))
        submitted = adf("submit", grid, *carol)
        assert submitted.exit_code == 0, submitted.output
        ids.append(re.search(r"/v1/jobs/(j[0-9a-f]+)", submitted.stdout).group(1))
    try:
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {carol[-1]}"}) as client:
            deadline = time.time() + 30  # the first goes once the dashboard no longer counts earlier tests' trials
            while client.get(f"/v1/jobs/{ids[0]}").json()["ray_job_id"] is None:
                assert time.time() < deadline, "the first job stayed queued"
                time.sleep(0.5)
            time.sleep(2.5)  # a round of the queue after it (every 2 s) gives the second its reason
        waiting = adf("status", ids[1], *carol)
        assert waiting.exit_code == 0, waiting.output
        assert re.search(r"waiting\s+over quota: user 'carol' runs 1 of 1 jobs at once", waiting.stdout), waiting.stdout
        assert json.loads(adf("status", ids[1], "--json", *carol).stdout)["ray_job_id"] is None
        assert "the service defaults" in quota("--default")
        assert adf("cancel", ids[0], *carol).exit_code == 0  # its trials free the 2 CPUs of the test's cluster
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {carol[-1]}"}) as client:
            deadline = time.time() + 30
            while client.get(f"/v1/jobs/{ids[1]}").json()["ray_job_id"] is None:  # the next round admits it
                assert time.time() < deadline, "the second job stayed queued"
                time.sleep(0.5)
    finally:
        for job in ids:
            adf("cancel", job, *carol)
