"""TF Serving's model server config (``--model_config_file``): several models, their
version policies and version labels, read with TF Serving's own proto.

The file is a text-format ``tensorflow.serving.ModelServerConfig`` (example:
``serving/deploy/models.config``)::

    model_config_list {
      config {
        name: "spade"
        base_path: "/models/spade"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 3 versions: 4 } }
        version_labels { key: "stable" value: 3 }
      }
    }

What TF Serving does, and this reader follows: a model without ``model_version_policy``
(or ``latest {}``, ``num_versions: 0``) serves its one newest version; a model name may
appear once; ``model_platform`` must be ``"tensorflow"`` (or the deprecated
``model_type: TENSORFLOW``). Checked here as well, because the folders are known before
anything loads: a ``specific`` policy must list versions, a label must name one of them
(unless labels for unavailable versions are allowed), and each base path must look like
one (:func:`serving.base_path.check_model_base_path`).

One difference: TF Serving refuses a relative ``base_path`` (unless it runs with
``--model_config_list_root_dir``); here it is taken relative to the current directory.

No TensorFlow is imported (under ``spade_cli``): ``spade-serve`` can read the file before
its slow start-up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tensorflow_serving.config import model_server_config_pb2

from serving.base_path import ServerStartError, check_model_base_path
from serving.text_proto import read_text_proto
from spade_tf.errors import SpadeError

LATEST, ALL, SPECIFIC = "latest", "all", "specific"
TENSORFLOW_PLATFORM = "tensorflow"
EXAMPLE = "serving/deploy/models.config"
_POSITION = re.compile(r"^\d+:\d+ : ")


class ModelConfigError(SpadeError, ValueError):
    """A model config file that cannot be served; the message names the file and the fix."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which of a model's versions are served (TF Serving's ``model_version_policy``).

    ``latest``: the ``num_versions`` highest loadable versions; ``all``: every version;
    ``specific``: the listed ``versions`` that exist.
    """

    kind: str = LATEST
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in (LATEST, ALL, SPECIFIC):
            raise ValueError(f"version policy {self.kind!r}: expected latest, all or specific")
        if self.kind == LATEST and self.num_versions < 1:
            raise ValueError(f"latest num_versions={self.num_versions}: expected at least 1")
        if self.kind == SPECIFIC and not self.versions:
            raise ValueError("a specific version policy needs at least one version")
        object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))

    def allows(self, version: int) -> bool:
        """Whether ``version`` may be served (``latest`` also limits how many)."""
        return self.kind != SPECIFIC or version in self.versions

    def __str__(self) -> str:
        if self.kind == LATEST:
            return f"latest {self.num_versions}"
        if self.kind == ALL:
            return "all"
        return "specific " + ", ".join(map(str, self.versions))


@dataclass(frozen=True)
class ModelEntry:
    """One ``config { ... }`` of a ``model_config_list``."""

    name: str
    base_path: Path
    policy: str = LATEST
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def version_policy(self) -> VersionPolicy:
        return VersionPolicy(self.policy, self.num_versions, self.versions)


def _platform_problem(config) -> str | None:
    platform, model_type = config.model_platform, config.model_type
    if model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        if platform:
            return ("sets both model_type (deprecated) and model_platform, which TF Serving "
                    "refuses: remove model_type")
        if model_type != model_server_config_pb2.TENSORFLOW:
            return (f"has model_type {model_server_config_pb2.ModelType.Name(model_type)}: "
                    f'this server serves TensorFlow SavedModels only; write model_platform: '
                    f'"{TENSORFLOW_PLATFORM}"')
        return None
    if not platform:
        return (f"has no model_platform (TF Serving refuses a model without one): add "
                f'model_platform: "{TENSORFLOW_PLATFORM}"')
    if platform != TENSORFLOW_PLATFORM:
        return (f"requests unsupported platform {platform!r}: this server serves TensorFlow "
                f'SavedModels only (model_platform: "{TENSORFLOW_PLATFORM}")')
    return None


def _entry(path: Path, config, allow_unavailable_labels: bool, check_base_paths: bool,
           ) -> ModelEntry:
    name = config.name
    problem = _platform_problem(config)
    if problem:
        raise ModelConfigError(f"{path}: model {name!r} {problem}.")
    if not config.base_path:
        raise ModelConfigError(f"{path}: model {name!r} has no base_path: add base_path: "
                               f'"<export_base>/{name}" (the folder of its integer versions).')
    choice = config.model_version_policy.WhichOneof("policy_choice") or LATEST
    num_versions, versions = 1, ()
    if choice == LATEST:
        # TF Serving serves max(num_versions, 1): an unset or 0 num_versions means 1.
        num_versions = max(config.model_version_policy.latest.num_versions, 1)
    elif choice == SPECIFIC:
        versions = tuple(sorted(set(config.model_version_policy.specific.versions)))
        if not versions:
            raise ModelConfigError(
                f"{path}: model {name!r} has a specific version policy without versions, so "
                "it would serve nothing: list them (specific { versions: 3 versions: 4 }) or "
                "use latest { num_versions: N }.")
        if versions[0] < 0:
            raise ModelConfigError(
                f"{path}: model {name!r}: version {versions[0]} cannot exist (version folders "
                "are named by non-negative integers): remove it from versions.")
    elif choice != ALL:
        raise ModelConfigError(f"{path}: model {name!r}: version policy {choice!r} is not "
                               "supported: use latest, all or specific.")
    labels = dict(sorted(config.version_labels.items()))
    if choice == SPECIFIC and not allow_unavailable_labels:
        for label, version in labels.items():
            if version not in versions:
                raise ModelConfigError(
                    f"{path}: model {name!r}: label {label!r} names version {version}, which "
                    f"its specific policy does not serve ({', '.join(map(str, versions))}), "
                    "and TF Serving assigns labels only to available versions: add "
                    f"versions: {version} or point the label at a listed version.")
    base_path = Path(os.path.abspath(config.base_path))  # relative: to the current directory
    if check_base_paths:
        try:
            check_model_base_path(base_path, name)
        except ServerStartError as error:
            # The layout check speaks of the command-line flag; here the fix is base_path.
            message = str(error).replace("--model-base-path ", "base_path: ")
            raise ModelConfigError(f"{path}: model {name!r}: {message}") from None
    return ModelEntry(name=name, base_path=base_path, policy=choice,
                      num_versions=num_versions, versions=versions, labels=labels)


def load_model_config(path: str | os.PathLike, *, allow_unavailable_labels: bool = False,
                      check_base_paths: bool = True) -> list[ModelEntry]:
    """The models of a ``--model_config_file``, in file order.

    Args:
        path: a text-format ``ModelServerConfig``.
        allow_unavailable_labels: TF Serving's
            ``--allow_version_labels_for_unavailable_models``: a label may name a version
            the policy does not (yet) serve.
        check_base_paths: check each base path's layout (off: parse only).

    Raises :class:`ModelConfigError` naming the file, the model and the fix.
    """
    path = Path(path)
    config = read_text_proto(
        path, model_server_config_pb2.ModelServerConfig(), "model config file",
        "the format is model_config_list { config { name: ... base_path: ... } }, as in "
        f"{EXAMPLE}", ModelConfigError)
    kind = config.WhichOneof("config")
    if kind == "custom_model_config":
        raise ModelConfigError(
            f"{path}: uses custom_model_config, which only TF Serving builds with a custom "
            "loader read: list the models in model_config_list { config { name: ... "
            "base_path: ... } } instead.")
    models = list(config.model_config_list.config)
    if not models:
        raise ModelConfigError(
            f"{path}: lists no models: add model_config_list {{ config {{ name: \"spade\" "
            f'base_path: "/models/spade" model_platform: "tensorflow" }} }} (see {EXAMPLE}).')
    seen: set[str] = set()
    for number, model in enumerate(models, 1):
        if not model.name:
            raise ModelConfigError(
                f"{path}: model {number} of model_config_list has no name: add name: \"...\" "
                "(what clients put in ModelSpec.name and in /v1/models/<name>).")
        if model.name in seen:
            raise ModelConfigError(
                f"{path}: model {model.name!r} is listed more than once (TF Serving: \"Illegal "
                f"to list model {model.name} multiple times in config list\"): keep one "
                "config per name, or rename one.")
        seen.add(model.name)
    return [_entry(path, model, allow_unavailable_labels, check_base_paths) for model in models]
