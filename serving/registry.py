"""Several models by name, each a :class:`~serving.model_manager.ModelManager`, behind the
same lookups as one manager (``servable(spec)``, ``states(spec)``), so the gRPC servicers
and the REST routes take either.

    registry = ModelRegistry.from_config("models.config", poll_seconds=2)
    registry.poll()            # load, then assign the config's version labels
    registry.start_polling()
    servable = registry.servable(model_pb2.ModelSpec(name="spade", version_label="stable"))

``ModelRegistry.single(base_path, model_name)`` is ``--model-base-path``/``--model-name``:
one model, its newest version, no labels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence

import grpc
from tensorflow_serving.apis import model_pb2

from serving.model_config import ModelEntry, load_model_config
from serving.model_manager import (
    LabelError,
    ModelManager,
    RequestError,
    ServableVersion,
    ServingHooks,
    VersionState,
    model_spec_text,
)
from spade_tf import signatures as sig

OnChange = Callable[[ServableVersion], None]


class ModelRegistry:
    """Model managers by name; a request's ``model_spec.name`` picks one."""

    def __init__(self, managers: Iterable[ModelManager]):
        self._managers: dict[str, ModelManager] = {}
        for manager in managers:
            if manager.model_name in self._managers:
                raise ValueError(f"model {manager.model_name!r} is given twice")
            self._managers[manager.model_name] = manager
        if not self._managers:
            raise ValueError("a model registry needs at least one model")

    @classmethod
    def single(cls, base_path: str | os.PathLike, model_name: str, poll_seconds: float = 2.0,
               max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
               on_change: OnChange | None = None,
               hooks: ServingHooks | None = None) -> ModelRegistry:
        """One model served from ``base_path``: its newest version (today's spade-serve)."""
        return cls([ModelManager(base_path, model_name, poll_seconds, max_input_bytes,
                                 on_change=on_change, hooks=hooks)])

    @classmethod
    def from_entries(cls, entries: Sequence[ModelEntry], poll_seconds: float = 2.0,
                     max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
                     on_change: OnChange | None = None,
                     allow_unavailable_labels: bool = False,
                     hooks: ServingHooks | None = None) -> ModelRegistry:
        """The models of a config file (:func:`serving.model_config.load_model_config`).
        Their labels are assigned by the first :meth:`poll`."""
        return cls([ModelManager(entry.base_path, entry.name, poll_seconds, max_input_bytes,
                                 on_change=on_change, policy=entry.version_policy,
                                 labels=entry.labels,
                                 allow_unavailable_labels=allow_unavailable_labels,
                                 hooks=hooks)
                    for entry in entries])

    @classmethod
    def from_config(cls, path: str | os.PathLike, poll_seconds: float = 2.0,
                    max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
                    on_change: OnChange | None = None,
                    allow_unavailable_labels: bool = False,
                    hooks: ServingHooks | None = None) -> ModelRegistry:
        """Read ``--model_config_file`` (:class:`~serving.model_config.ModelConfigError`)
        and build its models."""
        entries = load_model_config(path, allow_unavailable_labels=allow_unavailable_labels)
        return cls.from_entries(entries, poll_seconds, max_input_bytes, on_change,
                                allow_unavailable_labels, hooks)

    # -- the models -----------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return list(self._managers)

    @property
    def model_name(self) -> str:
        """The model's name (several: comma-separated), for code written for one model."""
        return ", ".join(self._managers)

    @property
    def managers(self) -> dict[str, ModelManager]:
        return dict(self._managers)

    def _served_text(self) -> str:
        names = ", ".join(repr(name) for name in self._managers)
        return f"model {names}" if len(self._managers) == 1 else f"models {names}"

    def manager(self, name: str) -> ModelManager:
        """The manager of model ``name``; NOT_FOUND (a :class:`RequestError`) if none."""
        manager = self._managers.get(name)
        if manager is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name}); this server "
                               f"serves {self._served_text()}")
        return manager

    # -- lookups (ModelManager's) ---------------------------------------------------

    def servable(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The loaded version a request's ModelSpec names (TF Serving's error codes)."""
        if not spec.name:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Missing model name in request (model_spec.name)")
        return self._manager_of(
            spec, f"Servable not found for request: {model_spec_text(spec)}").servable(spec)

    def states(self, spec: model_pb2.ModelSpec) -> dict[int, VersionState]:
        """Version states of the model ``spec`` names, for GetModelStatus."""
        return self._manager_of(
            spec, f"Could not find any versions of model {spec.name!r}").states(spec)

    def _manager_of(self, spec: model_pb2.ModelSpec, not_found: str) -> ModelManager:
        """The manager of the model ``spec`` names; NOT_FOUND (``not_found``, then the
        served models) for any other name."""
        manager = self._managers.get(spec.name)
        if manager is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"{not_found}; this server serves {self._served_text()}")
        return manager

    def not_serving(self) -> dict[str, dict[int, str]]:
        """Models that serve no version yet: {name: {version: load error}} (an empty dict:
        no version on disk yet). What a server's start reports."""
        result = {}
        for name, manager in self._managers.items():
            if manager.current is None:
                states = manager.states(model_pb2.ModelSpec(name=name))
                result[name] = {version: state.error for version, state in states.items()
                                if state.error}
        return result

    # -- loading --------------------------------------------------------------------

    def poll(self) -> list[ServableVersion]:
        """Scan every model once; returns the versions newly served. The first call also
        assigns the config's labels: a :class:`~serving.model_manager.LabelError` (the
        first one) is raised after every model was scanned."""
        changed, label_errors = [], []
        for manager in self._managers.values():
            try:
                servable = manager.poll()
            except LabelError as error:  # the other models still load
                label_errors.append(error)
                continue
            if servable is not None:
                changed.append(servable)
        if label_errors:
            raise label_errors[0]
        return changed

    def start_polling(self) -> None:
        for manager in self._managers.values():
            manager.start_polling()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every model's polling (no swap after this returns); waits up to ``timeout``
        seconds in all (None: no bound, 0: none); True once every poll thread ended."""
        for manager in self._managers.values():
            manager.stop(0)  # all flags first: no model waits for another's load
        deadline = None if timeout is None else time.monotonic() + timeout
        ended = True
        for manager in self._managers.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ended &= manager.stop(left)  # 0.0 once spent: no wait, just whether it ended
        return ended
