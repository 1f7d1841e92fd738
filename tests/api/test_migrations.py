import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

import api
from api.db import alembic_config, current_revision, head_revision, make_engine, make_sessionmaker, upgrade
from api.models import Base, Job, TrialRow, User, utcnow

TABLES = {"users", "tokens", "jobs", "trials"}


@pytest.fixture
def empty_engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_upgrade_creates_every_table_of_an_empty_database(empty_engine):
    assert current_revision(empty_engine) is None
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision() == "0007"
    assert TABLES <= set(inspect(empty_engine).get_table_names())


def test_upgrade_again_is_a_no_op_that_keeps_the_data(empty_engine):
    upgrade(empty_engine)
    with empty_engine.begin() as conn:
        conn.execute(User.__table__.insert(), {"name": "alice", "is_admin": False, "created_at": utcnow()})
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        assert conn.execute(select(User.name)).scalars().all() == ["alice"]


def test_migrated_schema_matches_the_models(empty_engine):
    upgrade(empty_engine)
    with empty_engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []


def insert_user_and_jobs(conn, *job_ids: str) -> None:
    """User 1 and succeeded jobs, in plain SQL: what an older revision's store held."""
    when = utcnow()
    conn.execute(text("INSERT INTO users (id, name, is_admin, created_at) VALUES (1, 'alice', false, :t)"),
                 {"t": when})
    for job in job_ids:
        conn.execute(text(
            "INSERT INTO jobs (id, owner_id, name, status, spec_json, request_hash, storage_dir, n_trials, "
            "progress_json, created_at, updated_at) VALUES (:id, 1, 'g', 'succeeded', '{}', 'h', '/r', 1, '{}', "
            ":t, :t)"), {"id": job, "t": when})


def test_0002_keeps_a_0001_stores_jobs_and_dates_the_rows_they_hold(empty_engine):
    upgrade(empty_engine, "0001")
    with empty_engine.begin() as conn:
        insert_user_and_jobs(conn, "j_rows", "j_none")
        conn.execute(text("INSERT INTO trials (job_id, stage, trial_id, trial_key, status) "
                          "VALUES ('j_rows', 'search', 't1', 'k', 'succeeded')"))
    upgrade(empty_engine)
    with make_sessionmaker(empty_engine)() as s:
        jobs = {job.id: job for job in s.scalars(select(Job))}
        assert set(jobs) == {"j_rows", "j_none"}
        assert jobs["j_rows"].results_at == jobs["j_rows"].updated_at and jobs["j_none"].results_at is None
    command.downgrade(alembic_config(empty_engine), "0001")
    assert "results_at" not in {c["name"] for c in inspect(empty_engine).get_columns("jobs")}


def test_0003_keeps_a_0002_stores_rows_with_learned_and_skip_edges_unknown(empty_engine):
    upgrade(empty_engine, "0002")
    with empty_engine.begin() as conn:
        insert_user_and_jobs(conn, "j")
        conn.execute(text("INSERT INTO trials (job_id, stage, trial_id, trial_key, status, test_top1) "
                          "VALUES ('j', 'evaluation', 't1', 'k', 'succeeded', 71.5)"))
    upgrade(empty_engine)
    with make_sessionmaker(empty_engine)() as s:
        [row] = s.scalars(select(TrialRow))
        assert (row.test_top1, row.learned, row.skip_edges) == (71.5, None, None)
        row.learned, row.skip_edges = False, 3
        s.commit()
    command.downgrade(alembic_config(empty_engine), "0002")
    assert not {"learned", "skip_edges"} & {c["name"] for c in inspect(empty_engine).get_columns("trials")}


def test_0004_keeps_a_0003_stores_rows_with_their_flops_unknown(empty_engine):
    upgrade(empty_engine, "0003")
    with empty_engine.begin() as conn:
        insert_user_and_jobs(conn, "j")
        conn.execute(text("INSERT INTO trials (job_id, stage, trial_id, trial_key, status, fusion_params) "
                          "VALUES ('j', 'evaluation', 't1', 'k', 'succeeded', 1234)"))
    upgrade(empty_engine)
    with make_sessionmaker(empty_engine)() as s:
        [row] = s.scalars(select(TrialRow))
        assert (row.fusion_params, row.fusion_flops) == (1234, None)
        row.fusion_flops = 5 * 10**12  # more than 32 bits hold
        s.commit()
        assert s.scalars(select(TrialRow)).one().fusion_flops == 5 * 10**12
    command.downgrade(alembic_config(empty_engine), "0003")
    assert "fusion_flops" not in {c["name"] for c in inspect(empty_engine).get_columns("trials")}


def test_0005_adds_the_node_id_and_removes_it_on_downgrade(empty_engine):
    upgrade(empty_engine, "0004")
    assert "node_id" not in {c["name"] for c in inspect(empty_engine).get_columns("trials")}
    upgrade(empty_engine)
    assert "node_id" in {c["name"] for c in inspect(empty_engine).get_columns("trials")}
    command.downgrade(alembic_config(empty_engine), "0004")
    assert "node_id" not in {c["name"] for c in inspect(empty_engine).get_columns("trials")}


def test_downgrade_to_base_removes_every_table(empty_engine):
    upgrade(empty_engine)
    command.downgrade(alembic_config(empty_engine), "base")
    assert not TABLES & set(inspect(empty_engine).get_table_names())
    upgrade(empty_engine)
    assert TABLES <= set(inspect(empty_engine).get_table_names())


def test_upgrade_by_url_creates_the_sqlite_directory(tmp_path):
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'jobs.db'}"
    upgrade(url)
    assert (tmp_path / "new" / "dir" / "jobs.db").exists()
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_concurrent_upgrades_on_postgresql_make_one_schema(postgres_server):
    """Server processes starting at once: the advisory lock lets one migrate and the others find head."""
    url = postgres_server.url(postgres_server.create_database())
    code = "import sys; from api.db import upgrade; upgrade(sys.argv[1])"
    repo = Path(api.__file__).parent.parent
    starts = [
        subprocess.Popen([sys.executable, "-c", code, url], cwd=repo, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failures = [p.stderr.read() for p in starts if p.wait(timeout=120) != 0]
    assert failures == []
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
