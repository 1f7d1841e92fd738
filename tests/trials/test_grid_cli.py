"""`adf-service validate` and `run`: bad input is refused before any Ray starts."""

from typer.testing import CliRunner

from api.cli import app

runner = CliRunner()


def test_validate_prints_the_trials_of_each_stage():
    result = runner.invoke(app, ["validate", "examples/grid-thesis.yaml"])
    assert result.exit_code == 0, result.output
    assert "288" in result.output and "42" in result.output


def test_validate_names_the_line_of_a_bad_key(tmp_path):
    (tmp_path / "g.yaml").write_text("name: x\ndataset: {store: s}\nspace:\n  operators: [S3]\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "g.yaml")])
    assert result.exit_code == 2 and "line 4" in result.output and "S3" in result.output


def test_run_on_a_dataset_that_is_not_a_feature_store_fails_at_once(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "g.yaml").write_text(f"name: x\ndataset: {{store: {tmp_path / 'empty'}}}\n")
    result = runner.invoke(app, ["run", str(tmp_path / "g.yaml")])
    assert result.exit_code == 2
    assert "dataset.store" in result.output and "empty" in result.output
