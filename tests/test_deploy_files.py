"""deploy/ holds templates no test can launch here (no cluster, no Kubernetes); these checks
only catch a file that no longer parses or lost the keys its tool needs."""

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_ray_up_config_parses_with_a_head_and_gpu_workers_that_install_the_package():
    config = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    assert {"cluster_name", "provider", "auth", "available_node_types", "head_node_type", "setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands"} <= set(config)
    assert config["head_node_type"] in config["available_node_types"]
    assert "gpu_worker" in config["available_node_types"]
    assert any("adf_service" in command and "pip install" in command for command in config["setup_commands"])


def test_the_kuberay_manifest_is_a_raycluster_with_token_auth_and_a_gpu_worker_group():
    manifest = yaml.safe_load((DEPLOY / "kuberay-raycluster.yaml").read_text())
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayCluster")
    spec = manifest["spec"]
    assert spec["authOptions"] == {"mode": "token"} and "headGroupSpec" in spec
    gpu_limits = [c["resources"]["limits"].get("nvidia.com/gpu")
                  for group in spec["workerGroupSpecs"] for c in group["template"]["spec"]["containers"]]
    assert gpu_limits == ["1"]


def test_the_dockerfile_is_python_311_slim_with_a_torch_variant_build_arg():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert "ARG PYTHON_VERSION=3.11" in lines and "FROM python:${PYTHON_VERSION}-slim" in lines
    assert "ARG TORCH_VARIANT=cpu" in lines
    assert any(line.startswith("RUN pip install -c constraints.txt .") for line in lines)
