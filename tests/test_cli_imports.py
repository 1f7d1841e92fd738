"""`adf-service` starts fast: the entry module imports no torch, Ray, SQLAlchemy, FastAPI, PyAV or
OpenCV (each command imports what it needs when it runs), and no module of the CLI imports
another's app."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "sqlalchemy", "fastapi", "uvicorn", "av", "cv2", "alembic")
CLI_MODULES = ("adf_service.cli", "trials.cli", "api.server_cli", "api.client_cli", "api.results_cli", "api.usage_cli", "api.logs_cli",
               "api.notify_cli", "api.local", "api.cli")


def loaded_after(statement: str) -> set[str]:
    """The top-level packages in sys.modules after ``statement`` in a fresh interpreter."""
    code = f"{statement}; import sys; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_the_console_script_loads_neither_torch_nor_ray():
    code = "import api.cli, sys; assert 'torch' not in sys.modules and 'ray' not in sys.modules, sorted(sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_importing_the_console_script_loads_no_heavy_package():
    assert not set(HEAVY) & loaded_after("import api.cli")


@pytest.mark.parametrize("module", CLI_MODULES)
def test_each_command_module_imports_alone_without_heavy_packages(module):
    assert not set(HEAVY) & loaded_after(f"import {module}")


def test_the_entry_module_alone_assembles_every_command():
    import typer

    import api.cli

    for module in CLI_MODULES[:-1]:
        assert not hasattr(sys.modules[module], "app"), f"{module} has an app of its own"
    group = typer.main.get_command(api.cli.app)
    assert group.list_commands(None) == [
        "space", "synth", "search", "evaluate", "baseline", "demo", "extract", "validate", "run", "report", "compare",
        "run-job", "serve", "stop-ray", "submit", "list", "status", "usage", "logs", "cancel", "resume", "rerun",
        "extend", "results",
        "best", "notify-secret", "local-job", "genotype", "token", "user",
    ]
    assert group.get_command(None, "run-job").hidden
    assert group.get_command(None, "genotype").list_commands(None) == ["show"]
    assert group.get_command(None, "token").list_commands(None) == ["create", "list", "revoke"]
