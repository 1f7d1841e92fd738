"""Job storage: local paths and pyarrow filesystem URIs, whole-file writes, clear errors."""

import pyarrow as pa
import pytest

from trials.results import RESULT_SCHEMA, read_table, write_tables
from trials.storage import PROGRESS_FILE, JobStorage, StorageError, read_progress, write_progress


def test_a_relative_path_is_resolved_so_trials_in_other_directories_find_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage = JobStorage.of("runs", "job")
    assert storage.is_local and storage.uri == f"{tmp_path}/runs/job" and storage.local_dir == tmp_path / "runs" / "job"


def test_a_file_uri_is_the_same_place_as_its_path(tmp_path):
    storage = JobStorage.of(f"file://{tmp_path}/runs/", "job")
    assert storage.uri == f"file://{tmp_path}/runs/job" and storage.path == f"{tmp_path}/runs/job"
    storage.create()
    storage.write_text("spec.json", "{}")
    assert (tmp_path / "runs" / "job" / "spec.json").read_text() == "{}"
    assert storage.read_text("spec.json") == "{}" and storage.exists("spec.json")


def test_an_existing_job_is_never_overwritten(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    storage.create()
    storage.write_text("spec.json", "kept")
    with pytest.raises(FileExistsError, match="--resume"):
        JobStorage.of(str(tmp_path), "job").create()
    assert storage.read_text("spec.json") == "kept"


def test_an_unknown_uri_scheme_names_the_storage(tmp_path):
    with pytest.raises(StorageError, match="nope://bucket"):
        JobStorage.of("nope://bucket/runs", "job")


def test_tables_round_trip_and_leave_no_temporary_file(tmp_path):
    storage = JobStorage.of(str(tmp_path), "job")
    row = {name: None for name in RESULT_SCHEMA.names} | {"stage": "search", "trial_key": "k", "status": "succeeded"}
    uris = write_tables(storage, [row])
    assert set(uris) == {"baselines", "search", "evaluation", "random", "controls", "bohb", "transfer"}
    assert read_table(storage, "search").to_pylist()[0]["trial_key"] == "k"
    assert read_table(tmp_path / "job", "baselines").num_rows == 0
    assert read_table(storage, "search").schema == RESULT_SCHEMA
    assert not [p for p in (tmp_path / "job" / "results").iterdir() if p.name.startswith(".")]
    assert isinstance(read_table(storage, "bohb"), pa.Table)


def test_at_finds_a_job_from_its_own_directory_path_or_uri(tmp_path):
    by_uri = JobStorage.at(f"file://{tmp_path}/runs/job/")
    assert (by_uri.root_uri, by_uri.job_id, by_uri.path) == (f"file://{tmp_path}/runs", "job", f"{tmp_path}/runs/job")
    by_path = JobStorage.at(tmp_path / "runs" / "job")
    assert by_path.is_local and by_path.uri == f"{tmp_path}/runs/job"


def test_the_progress_snapshot_is_none_until_written_then_read_back_whole(tmp_path):
    storage = JobStorage.of(f"file://{tmp_path}", "job")
    storage.create()
    assert read_progress(storage) is None
    snapshot = {"stages": {"search": {"total": 4, "succeeded": 1}}, "finished": False}
    write_progress(storage, snapshot)
    assert read_progress(storage) == snapshot and storage.exists(PROGRESS_FILE)
    storage.write_text(PROGRESS_FILE, "{half")  # never written so, but a reader must not fail on it
    assert read_progress(storage) is None


def test_an_s3_storage_with_its_region_resolves_offline_and_keeps_its_query_at_the_end():
    import pyarrow.fs as pafs

    from trials.spec import parse_grid

    spec = parse_grid("name: x\ndataset: {store: s}\nstorage: 's3://adf-bucket/runs?region=eu-west-1'\n")
    storage = JobStorage.of(spec.storage, "job7")  # no network: the region is given, nothing is looked up
    assert isinstance(storage.filesystem, pafs.S3FileSystem) and storage.filesystem.region == "eu-west-1"
    assert storage.path == "adf-bucket/runs/job7" and not storage.is_local and storage.local_dir is None
    assert storage.uri == "s3://adf-bucket/runs/job7?region=eu-west-1"
    assert storage.child_uri("bohb") == "s3://adf-bucket/runs/job7/bohb?region=eu-west-1"
    again = JobStorage.at(storage.uri)
    assert (again.path, again.job_id, again.uri) == (storage.path, "job7", storage.uri)


def test_every_file_of_a_job_goes_through_the_filesystem_it_names(tmp_path):
    import pyarrow.fs as pafs

    # A SubTreeFileSystem stands in for shared storage: a job writes only through it.
    shared = pafs.SubTreeFileSystem(str(tmp_path / "shared"), pafs.LocalFileSystem())
    (tmp_path / "shared").mkdir()
    storage = JobStorage(shared, "mem://shared", "", "job")
    storage.create()
    write_tables(storage, [{"stage": "baselines", "trial_key": "b", "status": "succeeded", "job": "job"}])
    uri = storage.write_bytes("report/report.html", b"<html></html>")
    assert uri == "mem://shared/job/report/report.html"
    assert (tmp_path / "shared" / "job" / "report" / "report.html").read_bytes() == b"<html></html>"
    assert read_table(storage, "baselines").num_rows == 1 and storage.read_bytes("report/report.html")
