"""deploy/'s built-in Kubernetes kinds (the API's Secret, PVC, Deployment and Service; the
RayJob's ConfigMap) with kubernetes-validate in strict mode, offline; each kind's check proven
by broken copies it refuses."""

import pytest

from tests.deploy.manifests import DEPLOY, K8S_VERSION, all_documents, broken, documents, kubernetes_errors

pytestmark = pytest.mark.usefixtures("no_network")

BUILTIN_DOCS = [(path, doc) for path, doc in all_documents() if doc["apiVersion"] != "ray.io/v1"]


def the(kind: str) -> dict:
    (doc,) = [doc for _, doc in BUILTIN_DOCS if doc["kind"] == kind]
    return doc


def test_the_api_is_a_secret_a_volume_claim_a_deployment_and_a_service():
    assert [doc["kind"] for doc in documents(DEPLOY / "api.yaml")] == [
        "Secret", "PersistentVolumeClaim", "Deployment", "Service"]
    assert sorted(doc["kind"] for _, doc in BUILTIN_DOCS) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"]


@pytest.mark.parametrize(("path", "doc"), BUILTIN_DOCS, ids=[f"{p.name}:{d['kind']}" for p, d in BUILTIN_DOCS])
def test_every_builtin_kind_meets_kubernetes_strict_schema(path, doc):
    assert kubernetes_errors(doc) == []


CONTAINER = ("spec", "template", "spec", "containers", 0)
API_ENV = the("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
DATABASE_URL = next(i for i, env in enumerate(API_ENV) if env["name"] == "ADF_DATABASE_URL")

BROKEN = {  # id: (kind, path, change, value, what the error says)
    "deployment-misspelt-key": ("Deployment", ("spec", "replicas"), "rename", "replica",
                                "'replica' was unexpected"),
    "deployment-misspelt-container-key": ("Deployment", (*CONTAINER, "readinessProbe"), "rename",
                                          "readynessProbe", "'readynessProbe' was unexpected"),
    "deployment-wrong-type": ("Deployment", ("spec", "replicas"), "set", "1", "'1' is not of type 'integer'"),
    "deployment-wrong-type-env": ("Deployment", (*CONTAINER, "env", 0, "value"), "set", 8265,
                                  "8265 is not of type 'string'"),
    "deployment-missing-selector": ("Deployment", ("spec", "selector"), "delete", None,
                                    "'selector' is a required property"),
    "deployment-missing-secret-key": ("Deployment", (*CONTAINER, "env", DATABASE_URL, "valueFrom", "secretKeyRef",
                                                     "key"), "delete", None, "'key' is a required property"),
    "service-misspelt-key": ("Service", ("spec", "selector"), "rename", "selecter", "'selecter' was unexpected"),
    "service-wrong-type": ("Service", ("spec", "ports", 0, "port"), "set", "8000",
                           "'8000' is not of type 'integer'"),
    "service-missing-port": ("Service", ("spec", "ports", 0, "port"), "delete", None,
                             "'port' is a required property"),
    "secret-misspelt-key": ("Secret", ("stringData",), "rename", "stringdata", "'stringdata' was unexpected"),
    "secret-wrong-type": ("Secret", ("stringData", "database-url"), "set", 5432, "5432 is not of type"),
    "secret-missing-name": ("Secret", ("metadata", "name"), "delete", None, "metadata.name: required"),
    "pvc-misspelt-key": ("PersistentVolumeClaim", ("spec", "accessModes"), "rename", "accessMode",
                         "'accessMode' was unexpected"),
    "pvc-wrong-type": ("PersistentVolumeClaim", ("spec", "accessModes"), "set", "ReadWriteMany",
                       "'ReadWriteMany' is not of type 'array'"),
    "pvc-missing-name": ("PersistentVolumeClaim", ("metadata", "name"), "delete", None,
                         "metadata.name: required"),
    "configmap-misspelt-key": ("ConfigMap", ("data",), "rename", "datas", "'datas' was unexpected"),
    "configmap-wrong-type": ("ConfigMap", ("data", "grid.yaml"), "set", {"name": "smoke"}, "is not of type"),
    "configmap-missing-name": ("ConfigMap", ("metadata", "name"), "delete", None, "metadata.name: required"),
}


@pytest.mark.parametrize(("kind", "path", "change", "value", "says"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_copy_is_refused_by_kubernetes_validate(kind, path, change, value, says):
    errors = kubernetes_errors(broken(the(kind), path, change, value))
    assert any(says in error for error in errors), errors


def test_an_api_version_kubernetes_no_longer_serves_is_refused():
    errors = kubernetes_errors(broken(the("Deployment"), ("apiVersion",), "set", "extensions/v1beta1"))
    assert errors == [f"(top): Couldn't find schema for kind Deployment with api version extensions/v1beta1 "
                      f"for kubernetes version {K8S_VERSION.rsplit('.', 1)[0]}"]
