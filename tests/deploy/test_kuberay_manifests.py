"""deploy/'s KubeRay manifests (RayCluster, RayJob) against KubeRay's v1 CRD schemas, strict
about unknown keys, and their pod templates against Kubernetes' own schemas; each check
proven by broken copies it refuses."""

import json
import shlex

import jsonschema
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    KUBERAY_KINDS,
    SCHEMAS,
    all_documents,
    as_pod_template,
    broken,
    documents,
    kuberay_errors,
    kuberay_schema,
    kubernetes_errors,
    pod_templates,
    strict,
)

pytestmark = pytest.mark.usefixtures("no_network")

KUBERAY_DOCS = [(path, doc) for path, doc in all_documents() if doc["apiVersion"] == "ray.io/v1"]


def the(kind: str) -> dict:
    (doc,) = [doc for _, doc in KUBERAY_DOCS if doc["kind"] == kind]
    return doc


def test_deploy_has_a_raycluster_and_a_rayjob_and_no_other_kuberay_kind():
    assert sorted(doc["kind"] for _, doc in KUBERAY_DOCS) == ["RayCluster", "RayJob"]


@pytest.mark.parametrize(("path", "doc"), KUBERAY_DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in KUBERAY_DOCS])
def test_every_kuberay_manifest_meets_its_crd_schema_with_no_unknown_key(path, doc):
    assert kuberay_errors(doc) == []


@pytest.mark.parametrize(("path", "doc"), KUBERAY_DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in KUBERAY_DOCS])
def test_every_pod_template_in_them_meets_kubernetes_strict_schema(path, doc):
    templates = pod_templates(doc)
    assert len(templates) >= 2  # a head and at least one worker group
    assert {where: kubernetes_errors(as_pod_template(f"{doc['kind']}-{i}", template))
            for i, (where, template) in enumerate(templates)} == {where: [] for where, _ in templates}


def test_strict_closes_the_spec_its_groups_and_the_pod_templates_containers():
    def at(node: dict, *keys: str) -> dict:
        for key in keys:
            node = node["items"] if key == "[]" else node["properties"][key]
        return node

    cluster, job = kuberay_schema("RayCluster"), kuberay_schema("RayJob")
    containers = ("template", "spec", "containers", "[]")
    closed = {
        "RayCluster spec": at(cluster, "spec"),
        "headGroupSpec": at(cluster, "spec", "headGroupSpec"),
        "workerGroupSpecs[]": at(cluster, "spec", "workerGroupSpecs", "[]"),
        "head pod spec": at(cluster, "spec", "headGroupSpec", "template", "spec"),
        "head containers[]": at(cluster, "spec", "headGroupSpec", *containers),
        "worker containers[]": at(cluster, "spec", "workerGroupSpecs", "[]", *containers),
        "RayJob spec": at(job, "spec"),
        "RayJob rayClusterSpec": at(job, "spec", "rayClusterSpec"),
        "RayJob head containers[]": at(job, "spec", "rayClusterSpec", "headGroupSpec", *containers),
        "RayJob submitter containers[]": at(job, "spec", "submitterPodTemplate", "spec", "containers", "[]"),
    }
    assert {name: node.get("additionalProperties") for name, node in closed.items()} == dict.fromkeys(closed, False)
    # ... while maps stay maps of their declared values
    assert at(cluster, "spec", "headGroupSpec", "rayStartParams")["additionalProperties"] == {"type": "string"}


def test_strict_leaves_maps_and_objects_that_preserve_unknown_fields_open():
    schema = strict({"type": "object", "properties": {
        "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "map": {"type": "object", "additionalProperties": {"type": "string"}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"b": {}}}},
        "either": {"anyOf": [{"type": "object", "properties": {"c": {}}}]},
    }})
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"free": {"anything": 1}, "map": {"k": "v"}})
    for wrong in ({"closed": {"b": "x"}}, {"list": [{"x": 1}]}, {"either": {"x": 1}}, {"extra": 1}):
        assert not validator.is_valid(wrong), wrong


def test_the_crds_alone_let_a_misspelt_key_through_which_strict_refuses():
    doc = broken(the("RayCluster"), ("spec", "headGroupSpec", "serviceType"), "rename", "servicetype")
    loose = json.loads((SCHEMAS / f"{KUBERAY_KINDS['RayCluster']}.schema.json").read_text())
    assert jsonschema.Draft202012Validator(loose).is_valid(doc)
    assert kuberay_errors(doc) == ["spec.headGroupSpec: Additional properties are not allowed "
                                   "('servicetype' was unexpected)"]


HEAD = ("spec", "headGroupSpec", "template", "spec", "containers", 0)
WORKER = ("spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0)
JOB_HEAD = ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0)

BROKEN = {  # id: (kind, path, change, value, what the error says)
    "cluster-misspelt-spec-key": ("RayCluster", ("spec", "enableInTreeAutoscaling"), "rename",
                                  "enableInTreeAutoScaling", "'enableInTreeAutoScaling' was unexpected"),
    "cluster-misspelt-group-key": ("RayCluster", ("spec", "headGroupSpec", "rayStartParams"), "rename",
                                   "rayStartParam", "'rayStartParam' was unexpected"),
    "cluster-misspelt-container-key": ("RayCluster", (*WORKER, "resources"), "rename", "resource",
                                       "'resource' was unexpected"),
    "cluster-wrong-type-replicas": ("RayCluster", ("spec", "workerGroupSpecs", 0, "maxReplicas"), "set", "8",
                                    "maxReplicas: '8' is not of type 'integer'"),
    "cluster-wrong-type-start-param": ("RayCluster", ("spec", "headGroupSpec", "rayStartParams", "num-gpus"),
                                       "set", 0, "num-gpus: 0 is not of type 'string'"),
    "cluster-wrong-auth-mode": ("RayCluster", ("spec", "authOptions", "mode"), "set", "tokens",
                                "'tokens' is not one of ['disabled', 'token']"),
    "cluster-missing-head": ("RayCluster", ("spec", "headGroupSpec"), "delete", None,
                             "'headGroupSpec' is a required property"),
    "cluster-missing-group-name": ("RayCluster", ("spec", "workerGroupSpecs", 0, "groupName"), "delete", None,
                                   "'groupName' is a required property"),
    "cluster-missing-container-name": ("RayCluster", (*HEAD, "name"), "delete", None,
                                       "'name' is a required property"),
    "job-misspelt-spec-key": ("RayJob", ("spec", "shutdownAfterJobFinishes"), "rename", "shutdownAfterJobFinish",
                              "'shutdownAfterJobFinish' was unexpected"),
    "job-misspelt-container-key": ("RayJob", (*JOB_HEAD, "volumeMounts"), "rename", "volumeMount",
                                   "'volumeMount' was unexpected"),
    "job-wrong-type-ttl": ("RayJob", ("spec", "ttlSecondsAfterFinished"), "set", "3600",
                           "ttlSecondsAfterFinished: '3600' is not of type 'integer'"),
    "job-wrong-type-entrypoint": ("RayJob", ("spec", "entrypoint"), "set", ["adf-service", "run"],
                                  "is not of type 'string'"),
    "job-missing-head": ("RayJob", ("spec", "rayClusterSpec", "headGroupSpec"), "delete", None,
                         "'headGroupSpec' is a required property"),
    "job-missing-containers": ("RayJob", ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec",
                                          "containers"), "delete", None, "'containers' is a required property"),
}


@pytest.mark.parametrize(("kind", "path", "change", "value", "says"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_copy_is_refused_by_the_strict_crd_schema(kind, path, change, value, says):
    errors = kuberay_errors(broken(the(kind), path, change, value))
    assert any(says in error for error in errors), errors


def test_a_manifest_of_another_api_version_is_refused():
    assert kuberay_errors(broken(the("RayCluster"), ("apiVersion",), "set", "ray.io/v1alpha1")) != []


BROKEN_TEMPLATES = {  # id: (path in the head's pod template, change, value, what the error says)
    "misspelt-container-key": (("spec", "containers", 0, "volumeMounts"), "rename", "volumeMount",
                               "'volumeMount' was unexpected"),
    "wrong-type-port": (("spec", "containers", 0, "ports", 0, "containerPort"), "set", "6379",
                        "'6379' is not of type 'integer'"),
    "missing-volume-name": (("spec", "volumes", 0, "name"), "delete", None, "'name' is a required property"),
}


@pytest.mark.parametrize(("path", "change", "value", "says"), BROKEN_TEMPLATES.values(),
                         ids=BROKEN_TEMPLATES.keys())
def test_a_broken_pod_template_is_refused_by_kubernetes_validate(path, change, value, says):
    template = the("RayCluster")["spec"]["headGroupSpec"]["template"]
    errors = kubernetes_errors(as_pod_template("head", broken(template, path, change, value)))
    assert any(says in error for error in errors), errors


def test_the_raycluster_has_token_auth_and_an_autoscaled_one_gpu_worker_group():
    manifest = the("RayCluster")
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    spec = manifest["spec"]
    assert spec["authOptions"] == {"mode": "token"} and spec["enableInTreeAutoscaling"] is True
    gpu_limits = [c["resources"]["limits"].get("nvidia.com/gpu")
                  for group in spec["workerGroupSpecs"] for c in group["template"]["spec"]["containers"]]
    assert gpu_limits == ["1"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"  # trials never land on the head


def test_the_rayjob_runs_the_grid_of_its_configmap_with_adf_service_run():
    from trials.spec import parse_grid

    path = DEPLOY / "kuberay-rayjob.yaml"
    configmaps = {doc["metadata"]["name"]: doc for doc in documents(path) if doc["kind"] == "ConfigMap"}
    job = the("RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["adf-service", "run"]
    grid_path = argv[2]
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in head["volumes"]}
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if grid_path.startswith(m["mountPath"] + "/")]
    source = volumes[mount["name"]]["configMap"]
    (item,) = [i for i in source["items"] if f"{mount['mountPath']}/{i['path']}" == grid_path]
    grid = parse_grid(configmaps[source["name"]]["data"][item["key"]], f"{path.name}: {source['name']}")
    # results and the generated store on the shared volume, which every Ray pod mounts
    shared = {m["mountPath"] for m in head["containers"][0]["volumeMounts"]
              if "persistentVolumeClaim" in volumes[m["name"]]}
    assert any(grid.storage.startswith(f"{root}/") and grid.dataset.store.startswith(f"{root}/")
               for root in shared)
    assert grid.resources.gpus_per_trial == 1
    assert job["spec"]["shutdownAfterJobFinishes"] is True
