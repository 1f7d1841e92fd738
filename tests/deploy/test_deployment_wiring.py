"""deploy/'s manifests as one deployment: what each names exists (Secrets and their keys, the
shared volume, ConfigMaps, the head's Service), the service's environment is settings it
really reads, and the service and the Ray pods see results at the same path."""

import os

import pytest

from api.settings import Settings
from tests.deploy.manifests import all_documents, pod_templates

pytestmark = pytest.mark.usefixtures("no_network")

DOCS = [doc for _, doc in all_documents()]


def by_kind(kind: str) -> list[dict]:
    return [doc for doc in DOCS if doc["kind"] == kind]


def the(kind: str) -> dict:
    (doc,) = by_kind(kind)
    return doc


def pod_specs() -> list[tuple[str, dict]]:
    """(where, pod spec) of the API's Deployment and of every pod template in KubeRay's kinds."""
    specs = [(f"Deployment {doc['metadata']['name']}", doc["spec"]["template"]["spec"])
             for doc in by_kind("Deployment")]
    for doc in DOCS:
        specs += [(f"{doc['kind']} {where}", t["spec"]) for where, t in pod_templates(doc)]
    return specs


def api_container() -> dict:
    (container,) = the("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def api_env() -> dict[str, dict]:
    return {env["name"]: env for env in api_container()["env"]}


def mounts_of(spec: dict, claim: str) -> set[str]:
    """Where the pod's containers mount the PersistentVolumeClaim ``claim``."""
    volumes = {volume["name"] for volume in spec.get("volumes", [])
               if volume.get("persistentVolumeClaim", {}).get("claimName") == claim}
    return {mount["mountPath"] for container in spec["containers"] for mount in container.get("volumeMounts", [])
            if mount["name"] in volumes}


def test_every_secret_reference_names_a_secret_and_key_that_will_exist():
    keys = {(secret["metadata"]["name"], key) for secret in by_kind("Secret")
            for key in {**secret.get("data", {}), **secret.get("stringData", {})}}
    # KubeRay makes a Secret named after each RayCluster with authOptions.mode token, key auth_token
    keys |= {(cluster["metadata"]["name"], "auth_token") for cluster in by_kind("RayCluster")
             if cluster["spec"]["authOptions"]["mode"] == "token"}
    refs = [(where, env["name"], env["valueFrom"]["secretKeyRef"]) for where, spec in pod_specs()
            for container in spec["containers"] for env in container.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})]
    assert len(refs) >= 2
    assert [(where, name) for where, name, ref in refs if (ref["name"], ref["key"]) not in keys] == []


def test_every_pod_mounts_the_shared_claim_that_deploy_defines_as_read_write_many():
    (claim,) = by_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    name = claim["metadata"]["name"]
    claims = {where: {v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", [])
                      if "persistentVolumeClaim" in v} for where, spec in pod_specs()}
    assert claims == dict.fromkeys(claims, {name})
    assert {where: mounts_of(spec, name) for where, spec in pod_specs()} == dict.fromkeys(claims, {"/mnt/adf"})


def test_every_configmap_volume_names_a_configmap_and_keys_that_deploy_defines():
    configmaps = {c["metadata"]["name"]: set(c["data"]) for c in by_kind("ConfigMap")}
    used = [(where, volume["configMap"]) for where, spec in pod_specs() for volume in spec.get("volumes", [])
            if "configMap" in volume]
    assert used
    missing = [(where, source["name"]) for where, source in used if source["name"] not in configmaps
               or not {item["key"] for item in source.get("items", [])} <= configmaps[source["name"]]]
    assert missing == []


def test_the_service_selects_the_api_pods_on_a_port_the_container_names():
    service, deployment = the("Service"), the("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in api_container()["ports"]}
    assert [p["targetPort"] in ports for p in service["spec"]["ports"]] == [True]
    assert api_container()["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    args = api_container()["args"]
    assert args[:2] == ["adf-service", "serve"] and args[args.index("--port") + 1] == str(ports["http"])


def test_the_service_finds_the_rayclusters_jobs_api_through_kuberays_head_service():
    cluster = the("RayCluster")
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    dashboard = next(p["containerPort"] for p in head["ports"] if p["name"] == "dashboard")
    assert api_env()["ADF_RAY_ADDRESS"]["value"] == f"http://{cluster['metadata']['name']}-head-svc:{dashboard}"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert api_env()["RAY_AUTH_MODE"]["value"] == "token"  # the cluster has token auth (authOptions)


def test_every_adf_variable_of_the_service_is_a_setting_and_they_load(monkeypatch):
    env = api_env()
    names = {f"ADF_{field.upper()}" for field in Settings.model_fields}
    assert sorted(n for n in env if n.startswith("ADF_") and n not in names) == []
    secrets = {s["metadata"]["name"]: s["stringData"] for s in by_kind("Secret")}
    for name in [n for n in os.environ if n.startswith("ADF_")]:
        monkeypatch.delenv(name)
    for name, entry in env.items():
        if name.startswith("ADF_"):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            monkeypatch.setenv(name, secrets[ref["name"]][ref["key"]] if ref else entry["value"])
    settings = Settings()
    assert settings.db_url.startswith("postgresql+psycopg://")  # not SQLite in a pod's disk
    assert settings.storage == "/mnt/adf/runs"
    assert [str(root) for root in settings.data_roots] == ["/mnt/adf/features"]


@pytest.mark.parametrize("variable", ["ADF_STORAGE", "ADF_DATA_ROOTS"])
def test_the_services_storage_and_stores_lie_on_the_volume_the_ray_pods_mount_at_the_same_path(variable):
    value = api_env()[variable]["value"]
    claim = the("PersistentVolumeClaim")["metadata"]["name"]
    for where, spec in pod_specs():
        assert any(root in value for root in mounts_of(spec, claim)), where
