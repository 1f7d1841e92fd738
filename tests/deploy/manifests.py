"""The Kubernetes manifests of ``deploy/`` and the offline checks the tests in this folder run on them.

Two validators, both without a cluster or a network:

- KubeRay's kinds (``ray.io/v1`` RayCluster, RayJob) against the ``openAPIV3Schema`` of
  KubeRay's CRDs (``tests/deploy/schemas/``, copied unchanged from ``shared/schemas``), made
  strict about unknown keys by :func:`strict`: the CRDs leave objects open, so a misspelt
  key would otherwise pass.
- Kubernetes' built-in kinds, and every pod template inside KubeRay's kinds (as a
  ``PodTemplate``), with ``kubernetes-validate`` in strict mode against the schemas of
  Kubernetes :data:`K8S_VERSION` that ship in its wheel.

A check is proven by :func:`broken`, which makes a copy of a real document with one change.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

__all__ = [
    "DEPLOY",
    "K8S_VERSION",
    "KUBERAY_KINDS",
    "SCHEMAS",
    "all_documents",
    "as_pod_template",
    "broken",
    "documents",
    "kubernetes_errors",
    "kuberay_errors",
    "kuberay_schema",
    "manifest_files",
    "pod_templates",
    "strict",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
# The Kubernetes whose schemas the built-in kinds must meet: a version still in providers'
# support when written; strict mode then also refuses fields only newer versions know.
K8S_VERSION = "1.34.0"
KUBERAY_KINDS = {"RayCluster": "kuberay-raycluster-v1", "RayJob": "kuberay-rayjob-v1"}

Key = str | int


def manifest_files() -> list[Path]:
    """Every YAML file of deploy/ that holds Kubernetes objects (not the `ray up` config)."""
    return sorted(path for path in DEPLOY.glob("*.yaml") if path.name != "ray-cluster.yaml")


def documents(path: Path) -> list[dict]:
    """The YAML documents of ``path``, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def all_documents() -> Iterator[tuple[Path, dict]]:
    """(file, document) for every document of :func:`manifest_files`."""
    for path in manifest_files():
        for doc in documents(path):
            yield path, doc


def strict(schema: dict) -> dict:
    """A copy of ``schema`` that refuses unknown keys: ``additionalProperties: false`` on every
    object schema that lists ``properties`` and says nothing of its own about other keys (no
    ``additionalProperties``, no ``x-kubernetes-preserve-unknown-fields``)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for child in node.get("properties", {}).values():
            walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    return schema


@functools.cache
def kuberay_schema(kind: str) -> dict:
    """The strict schema of a KubeRay kind (``RayCluster`` or ``RayJob``)."""
    return strict(json.loads((SCHEMAS / f"{KUBERAY_KINDS[kind]}.schema.json").read_text()))


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(key) for key in error.absolute_path) or "(top)"


def kuberay_errors(doc: dict) -> list[str]:
    """What KubeRay's strict CRD schema refuses in ``doc``, one ``path: message`` each."""
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") not in KUBERAY_KINDS:
        return [f"(top): not a KubeRay v1 kind: {doc.get('apiVersion')}/{doc.get('kind')} "
                f"(known: {', '.join(KUBERAY_KINDS)})"]
    validator = jsonschema.Draft202012Validator(kuberay_schema(doc["kind"]))
    return [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(doc), key=str)]


def kubernetes_errors(doc: dict) -> list[str]:
    """What Kubernetes :data:`K8S_VERSION`'s strict schema refuses in ``doc`` (the first error),
    and a missing ``metadata.name``, which the API server needs and the schema does not say."""
    errors = [] if (doc.get("metadata") or {}).get("name") else ["metadata.name: required by the API server"]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        errors.append(f"{_where(e)}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        errors.append(f"(top): {e.message}")
    return errors


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """The pod templates inside a RayCluster or RayJob: (where, template)."""
    spec = doc.get("spec", {})
    found = []
    if doc.get("kind") == "RayJob":
        if "submitterPodTemplate" in spec:
            found.append(("spec.submitterPodTemplate", spec["submitterPodTemplate"]))
        spec, prefix = spec.get("rayClusterSpec", {}), "spec.rayClusterSpec"
    else:
        prefix = "spec"
    if "headGroupSpec" in spec:
        found.append((f"{prefix}.headGroupSpec.template", spec["headGroupSpec"]["template"]))
    for i, group in enumerate(spec.get("workerGroupSpecs", [])):
        found.append((f"{prefix}.workerGroupSpecs.{i}.template", group["template"]))
    return found


def as_pod_template(name: str, template: dict) -> dict:
    """A pod template as the built-in kind ``PodTemplate``, which kubernetes-validate knows."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}


def broken(doc: Any, path: tuple[Key, ...], change: str, value: Any = None) -> Any:
    """A copy of ``doc`` with one change at ``path``: ``rename`` its last key to ``value``,
    ``set`` it to ``value``, or ``delete`` it."""
    doc = copy.deepcopy(doc)
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    if change == "rename":
        node[value] = node.pop(last)
    elif change == "set":
        node[last] = value
    elif change == "delete":
        del node[last]
    else:
        raise ValueError(f"change {change!r} not in rename, set, delete")
    return doc
