"""TF Serving's model config: the file (parsed with the real ModelServerConfig proto), version
policies over real version folders, version labels and the registry of several models.

Version folders are copies of the session's ``plain`` export (cheap); a folder holding a
junk ``saved_model.pb`` is a version that fails to load.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.model_config import (
    ALL,
    LATEST,
    SPECIFIC,
    ModelConfigError,
    ModelEntry,
    VersionPolicy,
    load_model_config,
)
from serving.model_manager import LabelError, ModelManager, RequestError
from serving.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
TF = 'model_platform: "tensorflow"'


def _spec(name: str = "plain", version: int | None = None, label: str | None = None):
    spec = model_pb2.ModelSpec(name=name)
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label
    return spec


def _refusal(call, *args) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RequestError) as raised:
        call(*args)
    return raised.value.code, raised.value.message


def _write(folder: Path, text: str, name: str = "models.config") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _broken(base: Path, version: int) -> None:
    (base / str(version)).mkdir(parents=True)
    (base / str(version) / "saved_model.pb").write_bytes(b"not a SavedModel")


# -- the file ----------------------------------------------------------------------------


def test_the_deploy_config_parses():
    entries = load_model_config(ROOT / "serving/deploy/models.config", check_base_paths=False)
    assert entries == [ModelEntry(name="spade", base_path=Path("/models/spade"))]
    assert entries[0].version_policy == VersionPolicy(LATEST, 1)


def test_several_models_policies_and_labels(tmp_path, monkeypatch):
    for name in ("a", "b", "c", "d"):
        (tmp_path / name).mkdir()  # an empty base path is fine: the server waits
    path = _write(tmp_path, f"""\
        model_config_list {{
          config {{ name: "a" base_path: "{tmp_path / 'a'}" {TF} }}
          config {{
            name: "b" base_path: "{tmp_path / 'b'}" {TF}
            model_version_policy {{ latest {{ num_versions: 3 }} }}
            version_labels {{ key: "stable" value: 7 }}
          }}
          config {{ name: "c" base_path: "c" {TF} model_version_policy {{ all {{}} }} }}
          config {{
            name: "d" base_path: "{tmp_path / 'd'}" {TF}
            model_version_policy {{ specific {{ versions: 4 versions: 3 versions: 4 }} }}
            version_labels {{ key: "stable" value: 3 }}
            version_labels {{ key: "canary" value: 4 }}
          }}
        }}
        """)
    monkeypatch.chdir(tmp_path)  # a relative base_path is taken from the current directory
    a, b, c, d = load_model_config(path)
    assert (a.name, a.base_path, a.version_policy, a.labels) == (
        "a", tmp_path / "a", VersionPolicy(LATEST, 1), {})
    # Labels of a latest policy cannot be checked before the versions load.
    assert (b.policy, b.num_versions, b.labels) == (LATEST, 3, {"stable": 7})
    assert (c.base_path, c.version_policy) == (tmp_path / "c", VersionPolicy(ALL))
    assert (d.policy, d.versions, d.labels) == (SPECIFIC, (3, 4), {"canary": 4, "stable": 3})
    assert str(d.version_policy) == "specific 3, 4" and str(b.version_policy) == "latest 3"
    # latest with num_versions 0 (or unset) serves one version, as in TF Serving.
    zero = _write(tmp_path, f"""\
        model_config_list {{ config {{ name: "a" base_path: "a" {TF}
          model_version_policy {{ latest {{ num_versions: 0 }} }} }} }}""", "zero.config")
    assert load_model_config(zero)[0].num_versions == 1
    legacy = _write(tmp_path, """\
        model_config_list { config { name: "a" base_path: "a" model_type: TENSORFLOW } }""",
                    "legacy.config")
    assert load_model_config(legacy)[0].name == "a"


def _one(body: str, base: str = '"{base}"', platform: str = TF) -> str:
    return f'model_config_list {{ config {{ name: "m" base_path: {base} {platform} {body} }} }}'


CONFIG_ERRORS = {
    "unparsable": ('model_config_list {\n  config { nme: "m" }\n}',
                   r"models.config:2:\d+: not a text-format ModelServerConfig: .*no field named "
                   r'"nme"; fix that line'),
    "custom config": ('custom_model_config { type_url: "example.com/Loader" }',
                      "uses custom_model_config.*list the models in model_config_list"),
    "no models": ("model_config_list {}", "lists no models: add model_config_list"),
    "duplicate": ('model_config_list { config { name: "m" base_path: "/x" } '
                  'config { name: "m" base_path: "/y" } }',
                  "model 'm' is listed more than once .*Illegal to list model m multiple "
                  "times.*keep one config per name"),
    "empty name": ('model_config_list { config { base_path: "/x" } }',
                   'model 1 of model_config_list has no name: add name: "..."'),
    "empty base path": (_one("", base='""'), "model 'm' has no base_path: add base_path: "
                                             '"<export_base>/m"'),
    "platform": (_one("", platform='model_platform: "pytorch"'),
                 "model 'm' requests unsupported platform 'pytorch': .*TensorFlow SavedModels "
                 "only"),
    "no platform": (_one("", platform=""),
                    'model \'m\' has no model_platform .*add model_platform: "tensorflow"'),
    "model_type OTHER": (_one("", platform="model_type: OTHER"),
                         "model 'm' has model_type OTHER: .*TensorFlow SavedModels only"),
    "model_type and platform": (_one("model_type: TENSORFLOW"),
                                "sets both model_type .* and model_platform.*remove model_type"),
    "specific without versions": (_one("model_version_policy { specific {} }"),
                                  "specific version policy without versions, so it would "
                                  "serve nothing: list them"),
    "negative version": (_one("model_version_policy { specific { versions: -1 } }"),
                         "version -1 cannot exist"),
    "label off policy": (_one('model_version_policy { specific { versions: 3 } } '
                              'version_labels { key: "stable" value: 2 }'),
                         "label 'stable' names version 2, which its specific policy does not "
                         r"serve \(3\).*add versions: 2 or point the label at a listed version"),
    "missing base path": (_one("", base='"{base}/missing"'),
                          r"model 'm': model base path .*missing is not a folder \(it does "
                          r"not exist\)"),
    "export base": (_one("", base='"{exports}"'),
                    "model 'm': model base path .* is an export base: .*give base_path: "),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_errors_name_the_file_the_problem_and_the_fix(case, tmp_path, plain_model):
    text, pattern = CONFIG_ERRORS[case]
    (tmp_path / "base").mkdir()
    path = _write(tmp_path, text.replace("{base}", str(tmp_path / "base")).replace(
        "{exports}", str(plain_model.base.parent)))
    with pytest.raises(ModelConfigError, match=pattern) as raised:
        load_model_config(path)
    assert str(raised.value).startswith(str(path)), raised.value
    assert isinstance(raised.value, ValueError)


def test_missing_or_folder_config_file(tmp_path):
    with pytest.raises(ModelConfigError, match=r"missing.config does not exist: give the path "
                                               r"of a text-format ModelServerConfig"):
        load_model_config(tmp_path / "missing.config")
    with pytest.raises(ModelConfigError, match="is a folder: give the file itself"):
        load_model_config(tmp_path)


def test_labels_for_unavailable_versions_can_be_allowed(tmp_path):
    (tmp_path / "base").mkdir()
    path = _write(tmp_path, _one('model_version_policy { specific { versions: 3 } } '
                                 'version_labels { key: "next" value: 4 }').replace(
        "{base}", str(tmp_path / "base")))
    entry, = load_model_config(path, allow_unavailable_labels=True)
    assert entry.labels == {"next": 4}


# -- policies over version folders -------------------------------------------------------


def test_policies_serve_their_versions_and_unload_the_others_after(
        tmp_path, plain_model, copy_version):
    base = tmp_path / "plain"
    for version in (1, 2, 3):
        copy_version(plain_model, base, version)
    added = []
    manager = ModelManager(base, "plain", poll_seconds=0, on_change=added.append,
                           policy=VersionPolicy(LATEST, 2))

    def served():
        return sorted(manager.servables)

    def state(version):
        return manager.states(_spec(version=version))[version].state

    assert manager.poll().version == 3 and served() == [2, 3]
    assert [servable.version for servable in added] == [2, 3]
    assert manager.servable(_spec()).version == 3  # no version: the highest served
    assert manager.servable(_spec(version=2)).version == 2
    assert _refusal(manager.servable, _spec(version=1)) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(plain, 1); versions 2, 3 are served")
    assert sorted(manager.states(_spec())) == [2, 3]  # 1 was never loaded

    manager.set_policy(VersionPolicy(SPECIFIC, versions=(1, 3, 9)))  # 9 is not on disk
    assert manager.poll().version == 1 and served() == [1, 3]
    assert (state(1), state(2), state(3)) == (AVAILABLE, END, AVAILABLE)
    assert manager.poll() is None

    manager.set_policy(VersionPolicy(ALL))
    _broken(base, 5)
    assert manager.poll().version == 2 and served() == [1, 2, 3]  # 5 failed, the rest serve
    assert state(5) == END and "5" in manager.states(_spec(version=5))[5].error
    copy_version(plain_model, base, 4)
    assert manager.poll().version == 4 and served() == [1, 2, 3, 4]
    assert manager.current.version == 4

    manager.set_policy(VersionPolicy(LATEST, 1))  # the default: today's spade-serve
    assert manager.poll() is None and served() == [4]  # 5 failed; nothing new loaded
    assert [state(version) for version in (1, 2, 3, 4)] == [END, END, END, AVAILABLE]
    shutil.rmtree(base / "4")
    assert manager.poll().version == 3 and served() == [3]  # falls back to the next highest
    for version in (1, 2, 3):
        shutil.rmtree(base / str(version))
    assert manager.poll() is None and served() == [3]  # nothing to replace it: kept
    assert [servable.version for servable in added] == [2, 3, 1, 2, 4, 3]


def test_a_newer_version_that_fails_keeps_the_served_one_under_latest(
        tmp_path, plain_model, copy_version):
    base = tmp_path / "plain"
    copy_version(plain_model, base, 1)
    manager = ModelManager(base, "plain", poll_seconds=0)
    assert manager.poll().version == 1
    _broken(base, 2)
    assert manager.poll() is None and manager.current.version == 1
    assert manager.states(_spec(version=2))[2].state == END


# -- labels and several models -----------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, plain_model, copy_version):
    """A registry from a config file: "plain" (versions 1 and 2, labelled) and "other"."""
    root = tmp_path_factory.mktemp("labelled")
    for version in (1, 2, 3):
        copy_version(plain_model, root / "plain", version)
    copy_version(plain_model, root / "other", 1)
    path = _write(root, f"""\
        model_config_list {{
          config {{
            name: "plain" base_path: "{root / 'plain'}" {TF}
            model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 2 }}
          }}
          config {{ name: "other" base_path: "{root / 'other'}" {TF} }}
        }}
        """)
    changed = []
    registry = ModelRegistry.from_config(path, poll_seconds=0, on_change=changed.append)
    assert sorted((s.model_name, s.version) for s in registry.poll()) == [
        ("other", 1), ("plain", 2)]
    assert sorted((s.model_name, s.version) for s in changed) == [
        ("other", 1), ("plain", 1), ("plain", 2)]
    yield registry
    registry.stop(1)


def test_labels_resolve_to_their_versions(labelled):
    assert labelled.model_names == ["plain", "other"]
    assert set(labelled.managers) == {"plain", "other"}
    assert labelled.manager("plain").labels == {"canary": 2, "stable": 1}
    assert labelled.servable(_spec(label="stable")).version == 1
    assert labelled.servable(_spec(label="canary")).version == 2
    assert labelled.servable(_spec()).version == 2
    assert labelled.servable(_spec("other")).version == 1
    assert labelled.states(_spec(label="stable")) == {1: labelled.states(_spec())[1]}
    assert labelled.states(_spec(label="canary"))[2].state == AVAILABLE
    assert _refusal(labelled.servable, _spec(label="nope")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: nope (labels of model 'plain': canary, stable)")
    assert _refusal(labelled.states, _spec(label="nope"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    # A model without labels keeps the single-model server's words.
    assert _refusal(labelled.servable, _spec("other", label="stable")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: stable (this server has no version labels; ask "
        "for a version number or the latest)")


def test_unknown_models_are_not_found_naming_the_served_ones(labelled):
    assert _refusal(labelled.servable, _spec("nope", version=3)) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(nope, 3); this server serves models "
        "'plain', 'other'")
    assert _refusal(labelled.states, _spec("nope")) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model 'nope'; this server serves models 'plain', "
        "'other'")
    assert _refusal(labelled.manager, "nope")[0] == grpc.StatusCode.NOT_FOUND
    assert _refusal(labelled.servable, _spec(""))[0] == grpc.StatusCode.INVALID_ARGUMENT


def test_labels_change_at_runtime_only_onto_available_versions(labelled):
    manager = labelled.manager("plain")
    try:
        manager.set_labels({"stable": 2, "canary": 1})
        assert labelled.servable(_spec(label="stable")).version == 2
        with pytest.raises(LabelError) as raised:
            manager.set_labels({"stable": 1, "canary": 3})  # 3 is on disk, not served
        assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert raised.value.message.startswith(
            "Request to assign label to version 3 of model plain, which is not currently "
            "available for inference")
        assert manager.labels == {"stable": 2, "canary": 1}  # all or nothing
        # --allow_version_labels_for_unavailable_models: new labels only, not moved ones.
        manager.set_labels({"stable": 2, "canary": 1, "next": 3}, allow_unavailable=True)
        assert _refusal(labelled.servable, _spec(label="next")) == (
            grpc.StatusCode.NOT_FOUND,
            "Servable not found for request: Specific(plain, 3); versions 1, 2 are served")
        with pytest.raises(LabelError, match="version 3 of model plain"):
            manager.set_labels({"stable": 3}, allow_unavailable=True)
    finally:
        manager.set_labels({"stable": 1, "canary": 2})


def test_labels_at_start_need_an_available_version_unless_allowed(tmp_path):
    (tmp_path / "empty").mkdir()
    entry = ModelEntry("m", tmp_path / "empty", labels={"stable": 7})
    registry = ModelRegistry.from_entries([entry], poll_seconds=0)
    with pytest.raises(LabelError, match="version 7 of model m, which is not currently "
                                         "available for inference") as raised:
        registry.poll()
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert registry.not_serving() == {"m": {}}
    allowed = ModelRegistry.from_entries([entry], poll_seconds=0, allow_unavailable_labels=True)
    assert allowed.poll() == []
    assert _refusal(allowed.servable, _spec("m", label="stable")) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(m, 7); no version is loaded yet")
    assert allowed.stop(0)


def test_a_single_model_registry_answers_as_its_manager(tmp_path):
    _broken(tmp_path / "plain", 1)
    registry = ModelRegistry.single(tmp_path / "plain", "plain", poll_seconds=0)
    manager = registry.manager("plain")
    assert registry.model_name == "plain" and registry.model_names == ["plain"]
    for spec in (_spec("nope"), _spec("nope", version=2)):
        assert _refusal(registry.servable, spec) == _refusal(manager.servable, spec)
        assert _refusal(registry.states, spec) == _refusal(manager.states, spec)
    assert registry.poll() == []
    errors = registry.not_serving()["plain"]
    assert list(errors) == [1] and errors[1]


def test_rest_routes_take_a_registry(labelled):
    routes = pytest.importorskip("serving.rest.routes")
    api = routes.RestApi(labelled)
    status, body = api.handle("GET", "/v1/models/plain/labels/stable")
    assert status == 200, body
    assert [entry["version"] for entry in json.loads(body)["model_version_status"]] == ["1"]
    status, body = api.handle("GET", "/v1/models/plain/labels/nope")
    assert status == 400 and b"Unrecognized servable version label: nope" in body
