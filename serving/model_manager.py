"""Model versions on disk -> loaded, warmed-up servables, swapped in as versions come and go.

The layout is TF Serving's: ``<model_base_path>/<integer version>/`` SavedModels, as
``spade-export`` writes them. Which versions are served is TF Serving's
``model_version_policy`` (:class:`serving.model_config.VersionPolicy`); the default, as in
TF Serving, is the newest version: the highest integer folder holding a ``saved_model.pb``
that loads. Other names (the hidden staging folders of an export in progress, ``tmp``,
...) are ignored. A new version is loaded and warmed up beside the served ones and then
swapped in under a lock; versions leaving the policy end after that. A request keeps the
:class:`ServableVersion` it started with, so a swap never fails it.

Requests are checked here the way TF Serving checks them, and every refusal is a
:class:`RequestError` carrying the gRPC status code TF Serving would answer with. Several
models: :class:`serving.registry.ModelRegistry`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.model_config import LATEST, VersionPolicy
from serving.servable import (  # noqa: F401 (re-exported: callers import them from here)
    MAX_WARMUP_RECORDS,
    LoadError,
    RequestError,
    ServableVersion,
    ServingHooks,
)
from spade_tf import signatures as sig
from spade_tf.errors import SpadeError
from spade_tf.layout import SAVED_MODEL_FILE, version_folders

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class VersionState:
    """What GetModelStatus reports for one version."""

    state: int
    error: str = ""


def _fingerprint(folder: Path) -> tuple[int, int]:
    """Changes when the version folder is rewritten: lets a failed load be retried then."""
    stat = (folder / SAVED_MODEL_FILE).stat()
    return stat.st_mtime_ns, stat.st_size


def model_spec_text(spec: model_pb2.ModelSpec) -> str:
    """TF Serving's wording for the servable a request asks for."""
    if spec.HasField("version"):
        return f"Specific({spec.name}, {spec.version.value})"
    return f"Latest({spec.name})"


def _reject_version_label(spec: model_pb2.ModelSpec) -> None:
    """TF Serving answers unknown version labels with INVALID_ARGUMENT; we have none."""
    if spec.WhichOneof("version_choice") == "version_label":
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Unrecognized servable version label: {spec.version_label} (this "
                           "server has no version labels; ask for a version number or the "
                           "latest)")


class LabelError(RequestError, SpadeError):
    """A version label that cannot be assigned (TF Serving answers FAILED_PRECONDITION)."""

    def __init__(self, message: str):
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, message)


def _versions_text(versions) -> str:
    return ", ".join(str(version) for version in sorted(versions))


def _served_text(served: Mapping[int, ServableVersion]) -> str:
    if not served:
        return "no version is loaded yet"
    if len(served) == 1:
        return f"version {next(iter(served))} is served"
    return f"versions {_versions_text(served)} are served"


class ModelManager:
    """Keeps the versions of one model that its policy wants loaded, polling its base path.

    ``policy`` (default: the newest version, as TF Serving's default) says which versions
    are served; several may be AVAILABLE at once. ``labels`` ({label: version}, TF
    Serving's ``version_labels``) are assigned after the first :meth:`poll`, and only to
    AVAILABLE versions unless ``allow_unavailable_labels`` (TF Serving's
    ``--allow_version_labels_for_unavailable_models``); :meth:`set_labels` changes them.
    """

    def __init__(self, base_path: str | os.PathLike, model_name: str,
                 poll_seconds: float = 2.0, max_input_bytes: int = sig.MAX_MESSAGE_BYTES,
                 on_change: Callable[[ServableVersion], None] | None = None,
                 policy: VersionPolicy | None = None, labels: Mapping[str, int] | None = None,
                 allow_unavailable_labels: bool = False, hooks: ServingHooks | None = None):
        self.base_path = Path(base_path)
        self.hooks = hooks or ServingHooks()
        self.model_name = model_name
        self.poll_seconds = poll_seconds
        self.max_input_bytes = max_input_bytes
        self.allow_unavailable_labels = allow_unavailable_labels
        self._on_change = on_change
        self._policy = policy or VersionPolicy()
        self._lock = threading.Lock()  # guards _served, _states and _labels
        self._poll_lock = threading.Lock()  # one scan-and-load at a time
        # Replaced, never changed in place: a reader may keep the dict it got.
        self._served: dict[int, ServableVersion] = {}
        self._labels: dict[str, int] = {}
        self._pending_labels = dict(labels) if labels else None
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- disk -----------------------------------------------------------------------

    def versions_on_disk(self) -> dict[int, Path]:
        """Integer version folders that hold a SavedModel (others are ignored), by version
        (:func:`spade_tf.layout.version_folders`)."""
        return version_folders(self.base_path)

    # -- loading --------------------------------------------------------------------

    @property
    def policy(self) -> VersionPolicy:
        return self._policy

    def set_policy(self, policy: VersionPolicy) -> None:
        """Serve by ``policy`` from the next :meth:`poll` on (a config reload)."""
        self._policy = policy

    def poll(self) -> ServableVersion | None:
        """Scan once and bring the served versions in line with the policy.

        New versions are loaded and warmed up first; versions leaving the policy end
        (state END) once they are AVAILABLE. A version that fails to load is logged,
        reported by :meth:`states` as END with its error, and not tried again until its
        files change; what is served meanwhile stays. Under ``latest``, with nothing served
        yet, older versions are tried in turn (with something served, one failed load ends
        the scan). Returns the newest newly served version, or None when none was added.
        The first call also assigns the constructor's labels (:class:`LabelError`).
        """
        with self._poll_lock:
            newest = self._poll_versions()
            pending, self._pending_labels = self._pending_labels, None
            if pending is not None:
                self.set_labels(pending)
            return newest

    def _poll_versions(self) -> ServableVersion | None:
        policy = self._policy
        on_disk = self.versions_on_disk()
        with self._lock:
            served = self._served
        allowed = {version: servable for version, servable in served.items()
                   if policy.allows(version)}
        kept = {version: allowed[version] for version in allowed.keys() & on_disk.keys()}
        loaded: dict[int, ServableVersion] = {}
        count = 0  # versions served or loaded so far, newest first
        for version, folder in sorted(on_disk.items(), reverse=True):
            if self._stop.is_set() or (policy.kind == LATEST and count >= policy.num_versions):
                break
            if version in kept:
                count += 1
                continue
            if not policy.allows(version):
                continue
            try:
                if self._failed.get(version) == _fingerprint(folder):
                    continue  # failed, and its files have not changed since
            except OSError:
                continue  # removed while we looked
            servable = self._load(version, folder)
            if servable is not None:
                loaded[version] = servable
                count += 1
            elif policy.kind == LATEST and served:
                break  # keep serving; the next scan tries the next older version
        pool = {**kept, **loaded}
        if policy.kind == LATEST:
            pool = {version: pool[version]
                    for version in sorted(pool, reverse=True)[:policy.num_versions]}
        if not pool:
            # Versions gone from disk with nothing to replace them stay served from memory.
            pool = allowed
        if pool.keys() == served.keys() and not loaded:
            return None
        return self._swap(pool, loaded)

    def _load(self, version: int, folder: Path) -> ServableVersion | None:
        try:
            fingerprint = _fingerprint(folder)
        except OSError:
            return None  # removed since the scan
        self._set_state(version, VersionState(State.LOADING))
        log.info("loading %s version %d from %s", self.model_name, version, folder)
        metrics = self.hooks.metrics
        start = time.perf_counter()
        try:
            servable = ServableVersion(self.model_name, version, folder, self.max_input_bytes,
                                       self.hooks)
            loaded = time.perf_counter()
            warmed = servable.warm_up()
        except Exception as error:  # a bad folder is that version's failure, nothing more
            self._failed[version] = fingerprint
            self._set_state(version, VersionState(State.END, str(error)))
            log.error("could not load %s version %d: %s", self.model_name, version, error)
            if metrics is not None:
                metrics.observe_load(folder, time.perf_counter() - start, ok=False)
            return None
        if metrics is not None:
            metrics.observe_load(folder, loaded - start, ok=True)
            metrics.observe_warmup(folder, time.perf_counter() - loaded)
        size = servable.metadata.get("image_size", "?")
        log.info("loaded %s version %d (image size %s, %s classes; %d warm-up requests "
                 "replayed)", self.model_name, version, size,
                 servable.metadata.get("num_classes", "?"), warmed)
        return servable

    def _swap(self, serve: dict[int, ServableVersion],
              loaded: dict[int, ServableVersion]) -> ServableVersion | None:
        """Serve ``serve`` from now on; returns the newest of ``loaded`` that is served.
        Once stopped, nothing changes (and the loaded versions are never served)."""
        with self._lock:
            if self._stop.is_set():  # a load that finished after stop(): never served
                for version in loaded:
                    self._states[version] = VersionState(
                        State.END, "not served: the server stopped while it was loading")
                return None
            previous, self._served = self._served, serve
            for version in loaded:
                self._states[version] = VersionState(
                    State.AVAILABLE if version in serve else State.END)
            for version in previous.keys() - serve.keys():
                # Requests holding this version finish on it; new ones get the others.
                self._states[version] = VersionState(State.END)
        added = [serve[version] for version in sorted(loaded.keys() & serve.keys())]
        ended = previous.keys() - serve.keys()
        for version in ended:
            previous[version].retire()
        log.info("serving %s version(s) %s%s", self.model_name, _versions_text(serve),
                 f" (unloaded {_versions_text(ended)})" if ended else "")
        if self._on_change is not None:
            for servable in added:
                self._on_change(servable)
        return added[-1] if added else None

    def _set_state(self, version: int, state: VersionState) -> None:
        with self._lock:
            self._states[version] = state

    def start_polling(self) -> None:
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="spade-version-poll",
                                            daemon=True)  # a load in progress must not block exit
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # never let the poller die: the next scan may succeed
                log.exception("polling %s failed", self.base_path)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling; no version is swapped in after this returns. Waits up to
        ``timeout`` seconds (None: no bound, 0: none) for a scan or load in progress;
        returns whether the poll thread has ended."""
        with self._lock:  # _swap checks the flag under this lock
            self._stop.set()
        if self._thread is None:
            return True
        if timeout != 0:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- labels ---------------------------------------------------------------------

    @property
    def labels(self) -> dict[str, int]:
        with self._lock:
            return dict(self._labels)

    def set_labels(self, labels: Mapping[str, int], allow_unavailable: bool | None = None,
                   ) -> None:
        """Replace the version labels, all or nothing (TF Serving's config reload).

        A label must name an AVAILABLE version; with ``allow_unavailable`` (default: the
        constructor's ``allow_unavailable_labels``), also a version not loaded yet, unless
        the label names another version now: moving a label onto a version that is not
        AVAILABLE would drop the requests that use it. Raises :class:`LabelError`.
        """
        allow = self.allow_unavailable_labels if allow_unavailable is None else allow_unavailable
        with self._lock:
            for label, version in sorted(labels.items()):
                if version in self._served or (
                        allow and self._labels.get(label, version) == version):
                    continue
                fix = ("start with labels for unavailable versions allowed" if not allow else
                       f"move it once version {version} is AVAILABLE")
                raise LabelError(
                    f"Request to assign label to version {version} of model "
                    f"{self.model_name}, which is not currently available for inference "
                    f"(label {label!r}; {_served_text(self._served)}): label an available "
                    f"version, or {fix}")
            self._labels = dict(labels)
        log.info("labels of %s: %s", self.model_name, self._labels or "none")

    def _version_asked(self, spec: model_pb2.ModelSpec) -> int | None:
        """The version a spec names (a label resolved), or None for the latest."""
        if spec.HasField("version"):
            return spec.version.value
        if spec.WhichOneof("version_choice") != "version_label":
            return None
        with self._lock:
            labels = self._labels
        if not labels:
            _reject_version_label(spec)
        if spec.version_label not in labels:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"Unrecognized servable version label: {spec.version_label} "
                               f"(labels of model {self.model_name!r}: "
                               f"{', '.join(sorted(labels))})")
        return labels[spec.version_label]

    # -- lookups --------------------------------------------------------------------

    @property
    def current(self) -> ServableVersion | None:
        """The newest served version (what a request without a version gets)."""
        with self._lock:
            served = self._served
        return served[max(served)] if served else None

    @property
    def servables(self) -> dict[int, ServableVersion]:
        """The AVAILABLE versions, by number."""
        with self._lock:
            return dict(self._served)

    def servable(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The loaded version a request's ModelSpec names (TF Serving's error codes)."""
        if not spec.name:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               "Missing model name in request (model_spec.name)")
        if spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {model_spec_text(spec)}; "
                               f"this server serves model {self.model_name!r}")
        version = self._version_asked(spec)
        with self._lock:
            served = self._served
        if version is None and served:
            return served[max(served)]
        if version in served:
            return served[version]
        # A label is resolved to its version first, as TF Serving does.
        asked = model_spec_text(spec) if version is None else \
            f"Specific({spec.name}, {version})"
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: {asked}; {_served_text(served)}")

    def states(self, spec: model_pb2.ModelSpec) -> dict[int, VersionState]:
        """Version states for GetModelStatus: all known versions, or the one asked for
        (by number or label)."""
        if spec.name != self.model_name:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name!r}; "
                               f"this server serves model {self.model_name!r}")
        version = self._version_asked(spec)
        with self._lock:
            states = dict(self._states)
        if version is not None:
            if version not in states:
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model "
                                   f"{self.model_name!r}")
            return {version: states[version]}
        return states
