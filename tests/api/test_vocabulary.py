"""The thesis' vocabulary has one home each: the REST API's enums and bounds are derived from it,
and the service reads a job's progress without importing Ray Tune."""

import json
import subprocess
import sys
from pathlib import Path

from adf_service.space import CELLS_RANGE, DISCRETIZATIONS, INPUTS_RANGE, OPERATOR_SETS
from api.status import JOB_STATUSES
from trials.results import STAGES, TRIAL_STATUSES

# Prints the enums of the app's OpenAPI schema, after the patches in argv[1] ran (in a fresh
# interpreter, so that the modules that derive the enums are imported after the patch).
ROOT = Path(__file__).parents[2]
OPENAPI_ENUMS = """
import json, sys
exec(sys.argv[1])
from api.app import create_app
from api.settings import Settings
schema = create_app(Settings(ray_address="http://127.0.0.1:1")).openapi()

def param(path, name, method="get"):
    (found,) = [p for p in schema["paths"][path][method]["parameters"] if p["name"] == name]
    s = found["schema"]
    return next((a for a in s.get("anyOf", [s]) if a.get("type") != "null"), s)

trials = "/v1/jobs/{job_id}/trials"
print(json.dumps({
    "operators": param(trials, "operators")["enum"],
    "stage": param(trials, "stage")["enum"],
    "results_stage": param("/v1/jobs/{job_id}/results", "stage")["enum"],
    "discretization": param(trials, "discretization")["enum"],
    "trial_status": param(trials, "status")["enum"],
    "n_inputs": [param(trials, "n_inputs")["minimum"], param(trials, "n_inputs")["maximum"]],
    "n_cells": [param(trials, "n_cells")["minimum"], param(trials, "n_cells")["maximum"]],
    "job_status": param("/v1/jobs", "status")["enum"],
    "job_out_status": schema["components"]["schemas"]["JobOut"]["properties"]["status"]["enum"],
}))
"""


def openapi_enums(patch: str = "") -> dict[str, list]:
    done = subprocess.run([sys.executable, "-c", OPENAPI_ENUMS, patch], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    return json.loads(done.stdout)


def test_the_query_enums_and_bounds_are_the_vocabularys():
    enums = openapi_enums()
    assert enums["operators"] == list(OPERATOR_SETS)
    assert enums["stage"] == enums["results_stage"] == list(STAGES)
    assert enums["discretization"] == list(DISCRETIZATIONS)
    assert enums["trial_status"] == list(TRIAL_STATUSES)
    assert enums["n_inputs"] == [min(INPUTS_RANGE), max(INPUTS_RANGE)]
    assert enums["n_cells"] == [min(CELLS_RANGE), max(CELLS_RANGE)]
    assert enums["job_status"] == enums["job_out_status"] == list(JOB_STATUSES)


def test_a_new_operator_set_stage_or_status_reaches_the_api_from_its_one_home():
    patch = """
from typing import Literal, get_args
import adf_service.space as space, trials.config as config, api.status as status
space.OPERATOR_SETS["S3"] = space.OPERATOR_SETS["S1"]
space.CELLS_RANGE = (*space.CELLS_RANGE, 5)
config.STAGES = (*config.STAGES, "distillation")
status.JobStatus = Literal[(*get_args(status.JobStatus), "paused")]
"""
    enums = openapi_enums(patch)
    assert enums["operators"] == [*OPERATOR_SETS, "S3"]
    assert enums["stage"] == enums["results_stage"] == [*STAGES, "distillation"]
    assert enums["n_cells"] == [min(CELLS_RANGE), 5]
    assert enums["job_status"] == enums["job_out_status"] == [*JOB_STATUSES, "paused"]


def test_the_job_statuses_the_store_moves_between_are_the_vocabularys():
    from api.jobstore import ALLOWED_TRANSITIONS

    assert set(ALLOWED_TRANSITIONS) == set(JOB_STATUSES)
    assert set().union(*ALLOWED_TRANSITIONS.values()) <= set(JOB_STATUSES)


def test_the_service_and_the_app_do_not_import_ray_tune():
    code = """
import sys
import api.app, api.service
print(sorted(m for m in sys.modules if m == "ray.tune" or m.startswith(("ray.tune.", "trials.progress",
                                                                       "trials.pipeline", "trials.bohb"))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
