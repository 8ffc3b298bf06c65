"""serving/deploy: the manifests parse and agree with each other, with the files beside
them and with the layout spade-export writes.

Fast: YAML, TF Serving's ModelServerConfig proto (``tensorflow_serving``'s light ``*_pb2``
module), ``serving.metrics``' MonitoringConfig reader, ``serving.base_path`` and
``spade_tf.layout``; nothing here runs TensorFlow.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.base_path import check_model_base_path
from serving.metrics import load_monitoring_config
from spade_tf.layout import SAVED_MODEL_FILE, VERSION_NAME, version_folders

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "serving" / "deploy"
IMAGE = "tensorflow/serving:2.20.0"
GPU_IMAGE = IMAGE + "-gpu"
MODEL = "spade"
STATUS_PATH = f"/v1/models/{MODEL}"
MANIFESTS = ("docker-compose.yml", "kubernetes.yaml", "kserve.yaml")
CONFIG_FILES = ("models.config", "batching_parameters.txt", "monitoring.config")
# KServe's own TF Serving runtime (config/runtimes/kserve-tensorflow-serving.yaml).
KSERVE_ARGS = ("--model_name={{.Name}}", "--port=9000", "--rest_api_port=8080",
               "--model_base_path=/mnt/models", "--rest_api_timeout_in_ms=60000")
KSERVE_MODEL_DIR = "/mnt/models"


def _documents(name: str) -> list[dict]:
    with open(DEPLOY / name) as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _kind(name: str, kind: str) -> dict:
    (found,) = [doc for doc in _documents(name) if doc.get("kind") == kind]
    return found


def _flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` arguments as {name: value}; each flag at most once."""
    pairs = [arg[2:].split("=", 1) for arg in args]
    assert all(arg.startswith("--") and len(pair) == 2 for arg, pair in zip(args, pairs,
                                                                            strict=True)), args
    flags = dict(pairs)
    assert len(flags) == len(pairs), f"a flag given twice: {args}"
    return flags


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _file_flags(flags: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in flags.items() if name.endswith("_file")}


def _model_config():
    config = text_format.Parse((DEPLOY / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    return model


def _metrics_path() -> str:
    config = load_monitoring_config(DEPLOY / "monitoring.config")
    assert config.prometheus_enabled
    return config.prometheus_path


# -- every file ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_parses(name):
    documents = _documents(name)
    assert documents
    if name != "docker-compose.yml":
        for doc in documents:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), doc.get("kind")
            assert doc["metadata"]["name"]


def test_every_image_is_the_pinned_release():
    compose = _documents("docker-compose.yml")[0]["services"]
    images = [service["image"] for service in compose.values()]
    images += [_container(_kind("kubernetes.yaml", "Deployment"))["image"]]
    images += [container["image"] for container in
               _kind("kserve.yaml", "ServingRuntime")["spec"]["containers"]]
    assert images == [IMAGE] * 3
    # Every mention, comments and the README included: this tag or its GPU variant.
    for path in [*(DEPLOY / name for name in MANIFESTS), DEPLOY / "README.md"]:
        text = path.read_text()
        tags = set(re.findall(r"tensorflow/serving:([\w.\-]+)", text))
        assert tags <= {"2.20.0", "2.20.0-gpu"}, (path.name, tags)
        if path.suffix in (".yml", ".yaml"):
            assert GPU_IMAGE in text, f"{path.name} has no GPU variant"


def test_the_config_files_parse():
    model = _model_config()
    assert (model.name, model.model_platform) == (MODEL, "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1
    assert _metrics_path() == "/monitoring/prometheus/metrics"


def test_the_readme_names_every_file():
    readme = (DEPLOY / "README.md").read_text()
    for path in DEPLOY.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name


# -- docker compose ------------------------------------------------------------------------


def test_compose_ports_mounts_and_healthcheck():
    service = _documents("docker-compose.yml")[0]["services"]["spade-serving"]
    flags = _flags(service["command"])
    assert (flags["port"], flags["rest_api_port"]) == ("8500", "8501")
    assert sorted(service["ports"]) == ["8500:8500", "8501:8501"]
    mounts = dict(reversed(volume.rsplit(":", 2)[:2]) for volume in service["volumes"])
    # Every file a flag names is mounted there, from the file beside the compose file.
    files = _file_flags(flags)
    assert sorted(Path(path).name for path in files.values()) == sorted(CONFIG_FILES)
    for path in files.values():
        assert mounts[path] == f"./{Path(path).name}"
    assert mounts[_model_config().base_path].endswith(f"exports/{MODEL}}}")
    health = " ".join(service["healthcheck"]["test"])
    assert "/dev/tcp/127.0.0.1/8501" in health and f"GET {STATUS_PATH} " in health
    labels = service["labels"]
    assert labels["prometheus.io/port"] == flags["rest_api_port"]
    assert labels["prometheus.io/path"] == _metrics_path()


# -- kubernetes ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kubernetes.yaml", "kserve.yaml"])
def test_configmap_copies_equal_the_files(name):
    data = _kind(name, "ConfigMap")["data"]
    assert data
    for key, text in data.items():
        assert text == (DEPLOY / key).read_text(), f"{name}: {key} differs from the file"


def test_kubernetes_ports_service_and_mounts():
    deployment = _kind("kubernetes.yaml", "Deployment")
    container = _container(deployment)
    flags = _flags(container["args"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": int(flags["port"]), "http": int(flags["rest_api_port"])}
    assert ports == {"grpc": 8500, "http": 8501}
    service = _kind("kubernetes.yaml", "Service")
    assert {port["name"]: (port["port"], port["targetPort"]) for port in
            service["spec"]["ports"]} == {name: (number, name) for name, number in ports.items()}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]
               ["volumes"]}
    configmap = _kind("kubernetes.yaml", "ConfigMap")
    files = _file_flags(flags)
    assert sorted(Path(path).name for path in files.values()) == sorted(CONFIG_FILES)
    for path in files.values():
        mount = mounts[path]
        assert mount["subPath"] in configmap["data"] and mount["subPath"] == Path(path).name
        assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    exports = mounts[_model_config().base_path]
    assert exports["readOnly"] and "persistentVolumeClaim" in volumes[exports["name"]]

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["http"]
    assert annotations["prometheus.io/path"] == _metrics_path()


def test_kubernetes_probes():
    container = _container(_kind("kubernetes.yaml", "Deployment"))
    names = {port["name"] for port in container["ports"]}
    # Ports open only after the first load: the startup probe waits for gRPC, long enough.
    startup = container["startupProbe"]
    assert startup["tcpSocket"]["port"] == "grpc"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    readiness = container["readinessProbe"]["httpGet"]
    assert (readiness["path"], readiness["port"]) == (STATUS_PATH, "http")
    assert container["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe].get("httpGet") or container[probe]["tcpSocket"]
        assert action["port"] in names, probe


# -- kserve --------------------------------------------------------------------------------


def test_kserve_runtime():
    runtime = _kind("kserve.yaml", "ServingRuntime")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = runtime["spec"]
    (model_format,) = spec["supportedModelFormats"]
    assert (model_format["name"], model_format["version"]) == ("tensorflow", "2")
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert container["args"][:len(KSERVE_ARGS)] == list(KSERVE_ARGS)
    flags = _flags(container["args"])
    assert [port["containerPort"] for port in container["ports"]] == [int(flags["rest_api_port"])]
    assert spec["annotations"]["prometheus.kserve.io/port"] == flags["rest_api_port"]
    assert spec["annotations"]["prometheus.kserve.io/path"] == _metrics_path()
    # The flags' files come from the ConfigMap in the same file.
    (mount,) = container["volumeMounts"]
    (volume,) = [volume for volume in spec["volumes"] if volume["name"] == mount["name"]]
    configmap = _kind("kserve.yaml", "ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    for path in _file_flags(flags).values():
        assert Path(path).parent == Path(mount["mountPath"])
        assert Path(path).name in configmap["data"]


def test_kserve_inference_service():
    service = _kind("kserve.yaml", "InferenceService")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["name"] == MODEL  # --model_name={{.Name}}: clients ask for it
    model = service["spec"]["predictor"]["model"]
    runtime = _kind("kserve.yaml", "ServingRuntime")
    assert model["runtime"] == runtime["metadata"]["name"]
    assert any(model["modelFormat"].items() <= fmt.items()
               for fmt in runtime["spec"]["supportedModelFormats"])
    assert re.fullmatch(r"(pvc|gs|s3)://[\w.\-/]+", model["storageUri"])


def test_model_base_paths_hold_version_folders(tmp_path):
    """What spade-export writes, <export_base>/<model_name>/<version>/saved_model.pb, is
    what each deployment's base path must hold: the base path itself is the model folder
    (not a version, not the export base)."""
    uri = _kind("kserve.yaml", "InferenceService")["spec"]["predictor"]["model"]["storageUri"]
    flags = _flags(_kind("kserve.yaml", "ServingRuntime")["spec"]["containers"][0]["args"])
    assert flags["model_base_path"] == KSERVE_MODEL_DIR
    base_path = _model_config().base_path
    assert Path(base_path).name == MODEL  # <export_base>/<model_name>
    for path in (base_path, uri.rstrip("/"), flags["model_base_path"]):
        assert not VERSION_NAME.fullmatch(path.rsplit("/", 1)[-1]), f"{path} is a version"
    # The README's picture of /mnt/models is a base path by the server's own rules.
    readme = (DEPLOY / "README.md").read_text()
    pictured = f"{KSERVE_MODEL_DIR}/1/{SAVED_MODEL_FILE}"
    assert pictured in readme
    (tmp_path / pictured.lstrip("/")).parent.mkdir(parents=True)
    (tmp_path / pictured.lstrip("/")).write_bytes(b"")
    check_model_base_path(tmp_path / KSERVE_MODEL_DIR.lstrip("/"), MODEL)
    assert list(version_folders(tmp_path / KSERVE_MODEL_DIR.lstrip("/"))) == [1]
