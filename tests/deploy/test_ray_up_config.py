"""deploy/ray-cluster.yaml as `ray up` checks it before launching anything: Ray's own
autoscaler schema (ray/autoscaler/ray-schema.json), then ``prepare_config`` (defaults filled
in) and ``validate_config``; offline (no socket may connect); each check proven by broken copies."""

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from api.settings import Settings
from tests.deploy.manifests import DEPLOY, broken

pytestmark = pytest.mark.usefixtures("no_network")

CONFIG = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def ray_up_errors(config: dict) -> list[str]:
    """What Ray's schema refuses in ``config`` as written, else what ``validate_config`` refuses
    once ``prepare_config`` has filled in the defaults, as `ray up` runs them."""
    validator = jsonschema.Draft7Validator(RAY_SCHEMA)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in sorted(validator.iter_errors(config), key=str)]
    if errors:
        return errors
    try:
        validate_config(prepare_config(copy.deepcopy(config)))
    except (jsonschema.ValidationError, ValueError, RuntimeError) as e:
        return [f"validate_config: {getattr(e, 'message', e)}"]
    return []


def test_the_ray_up_config_meets_rays_schema_and_validate_config():
    assert ray_up_errors(CONFIG) == []


GPU = ("available_node_types", "gpu_worker")

BROKEN = {  # id: (path, change, value, what the error says)
    "misspelt-key": (("max_workers",), "rename", "max_worker", "'max_worker' was unexpected"),
    "misspelt-node-type-key": ((*GPU, "min_workers"), "rename", "min_worker", "'min_worker' was unexpected"),
    "wrong-type": (("max_workers",), "set", "8", "'8' is not of type 'integer'"),
    "wrong-type-commands": (("setup_commands",), "set", "pip install adf-service", "is not of type 'array'"),
    "wrong-type-resources": (("available_node_types", "head", "resources", "GPU"), "set", 0.5,
                             "0.5 is not of type 'integer'"),
    "missing-provider": (("provider",), "delete", None, "'provider' is a required property"),
    "missing-node-config": ((*GPU, "node_config"), "delete", None, "'node_config' is a required property"),
    "head-type-not-defined": (("head_node_type",), "set", "cpu_head",
                              "`head_node_type` must be one of `available_node_types`"),
    "more-min-workers-than-max": ((*GPU, "min_workers"), "set", 9,
                                  "max_workers` is smaller than the sum of `min_workers`"),
}


@pytest.mark.parametrize(("path", "change", "value", "says"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_copy_is_refused(path, change, value, says):
    errors = ray_up_errors(broken(CONFIG, path, change, value))
    assert any(says in error for error in errors), errors


def test_it_has_a_cpu_head_and_gpu_workers_that_install_the_package_wheel():
    assert CONFIG["available_node_types"][CONFIG["head_node_type"]]["resources"]["GPU"] == 0
    assert "gpu_worker" in CONFIG["available_node_types"]
    assert any("adf_service" in command and "pip install" in command for command in CONFIG["setup_commands"])


def test_the_service_on_the_head_reads_only_settings_that_exist_and_finds_the_dashboard():
    commands = " ".join(CONFIG["head_start_ray_commands"])
    variables = set(re.findall(r"\b(ADF_[A-Z_]+)=", commands))
    assert {"ADF_RAY_ADDRESS", "ADF_STORAGE"} <= variables
    assert variables <= {f"ADF_{field.upper()}" for field in Settings.model_fields}
    serve = next(c for c in CONFIG["head_start_ray_commands"] if "adf-service serve" in c)
    assert "ADF_RAY_ADDRESS=http://127.0.0.1:8265" in shlex.split(serve)
    assert "--dashboard-host=0.0.0.0" in " ".join(CONFIG["head_start_ray_commands"])
