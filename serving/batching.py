"""Server-side batching, as TF Serving's ``--enable_batching --batching_parameters_file``.

:func:`load_batching_parameters` reads TF Serving's text-format ``BatchingParameters``;
:class:`BatchScheduler` merges concurrent requests for one signature along dimension 0,
runs them once and hands each caller its own rows back. It follows TF Serving's
``SharedBatchScheduler`` (a queue per kind of request, batch threads shared round-robin)
and ``BatchingSession`` (padding to ``allowed_batch_sizes`` with copies of the first row
of the batch's last request), with two differences so that a request always gets the
answer it would get alone: inputs of another dtype or shape (beyond dimension 0) wait in
another queue instead of failing with FAILED_PRECONDITION when they meet (so nothing is
ever padded for ``pad_variable_length_inputs``), and when a merged run fails with a
:class:`RequestError` (one request's bad label id, say) each request is run again alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    wrappers_pb2,
)

from serving.errors import RequestError
from serving.text_proto import parse_text_proto, read_text_proto
from spade_tf.errors import SpadeError

log = logging.getLogger(__name__)

RunFn = Callable[[str, dict[str, np.ndarray]], Mapping[str, np.ndarray]]
OnBatchFn = Callable[[str, int, list[float]], None]


_EXAMPLE = "see serving/deploy/batching_parameters.txt for an example"


class BatchingConfigError(SpadeError, ValueError):
    """The batching parameters file is missing, unparsable or holds bad values."""


def _cpu_count() -> int:
    # TF Serving's default is port::MaxParallelism(): the CPUs this process may run on.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


# The wrapper-typed fields of BatchingParameters in TF Serving's session_bundle_config.proto
# (name, number, google.protobuf type); 6 and 7 are plain fields, added below.
_WRAPPED_FIELDS = (
    ("max_batch_size", 1, "Int64Value"),
    ("batch_timeout_micros", 2, "Int64Value"),
    ("max_enqueued_batches", 3, "Int64Value"),
    ("num_batch_threads", 4, "Int64Value"),
    ("thread_pool_name", 5, "StringValue"),
    ("enable_large_batch_splitting", 8, "BoolValue"),
    ("max_execution_batch_size", 9, "Int64Value"),
)


def _build_message_class() -> type:
    """The ``tensorflow.serving.BatchingParameters`` message class, in a private pool
    (``tensorflow_serving.config`` does not ship it, and a private pool cannot clash with
    a copy some other package registers)."""
    pool, wrappers = descriptor_pool.DescriptorPool(), descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    proto = descriptor_pb2.FileDescriptorProto(
        name="spade_serving/batching_parameters.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    fdp = descriptor_pb2.FieldDescriptorProto
    for name, number, wrapper in _WRAPPED_FIELDS:
        message.field.add(name=name, number=number, label=fdp.LABEL_OPTIONAL,
                          type=fdp.TYPE_MESSAGE, type_name=f".google.protobuf.{wrapper}")
    message.field.add(name="allowed_batch_sizes", number=6, label=fdp.LABEL_REPEATED,
                      type=fdp.TYPE_INT64)
    message.field.add(name="pad_variable_length_inputs", number=7,
                      label=fdp.LABEL_OPTIONAL, type=fdp.TYPE_BOOL)
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParametersProto = _build_message_class()


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching parameters as plain values; the defaults are TF Serving's
    (``SharedBatchScheduler::Options`` and ``QueueOptions``) for fields a file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_cpu_count)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))
        problem = _problem(self)
        if problem:
            raise BatchingConfigError(f"batching parameters: {problem}")

    @property
    def batch_timeout_seconds(self) -> float:
        return self.batch_timeout_micros / 1e6


def _problem(p: BatchingParameters) -> str | None:
    """What is wrong with ``p`` and how to fix it, as TF Serving checks at load time."""
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(p, name) < 1:
            return (f"{name} must be at least 1, got {getattr(p, name)}; "
                    f"set {name} {{ value: N }} with N >= 1 or leave it out for the default")
    if p.batch_timeout_micros < 0:
        return (f"batch_timeout_micros must be 0 or more, got {p.batch_timeout_micros}; "
                "use 0 to run a batch as soon as a batch thread is free")
    if p.enable_large_batch_splitting:
        return ("enable_large_batch_splitting is not supported by spade-serve; remove it "
                "(or set it to false) and keep requests at most max_batch_size rows")
    sizes = p.allowed_batch_sizes
    if sizes:
        if sizes[0] < 1 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
            return (f"allowed_batch_sizes must be positive and strictly increasing, got "
                    f"{list(sizes)}; list each size once, smallest first")
        if sizes[-1] != p.max_batch_size:
            return (f"Last entry in allowed_batch_sizes must match max_batch_size; last "
                    f"entry was {sizes[-1]}; expected {p.max_batch_size} (make the last "
                    "allowed_batch_sizes entry equal to max_batch_size)")
    return None


def _values(message, source: str) -> BatchingParameters:
    """A parsed ``BatchingParameters`` message -> :class:`BatchingParameters`; errors name
    ``source``."""
    values: dict[str, object] = {
        name: getattr(message, name).value
        for name, _, _ in _WRAPPED_FIELDS if message.HasField(name)}
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    try:
        return BatchingParameters(**values)
    except BatchingConfigError as err:
        raise BatchingConfigError(
            str(err).replace("batching parameters:", f"{source}:", 1)) from None


def parse_batching_parameters(text: str, source: str = "<text>") -> BatchingParameters:
    """Text-format ``BatchingParameters`` -> :class:`BatchingParameters`."""
    message = parse_text_proto(text, BatchingParametersProto(), source, _EXAMPLE,
                               BatchingConfigError)
    return _values(message, source)


def load_batching_parameters(path: str | os.PathLike[str]) -> BatchingParameters:
    """Reads TF Serving's ``--batching_parameters_file`` (text format)."""
    message = read_text_proto(path, BatchingParametersProto(), "batching parameters file",
                              _EXAMPLE, BatchingConfigError)
    return _values(message, str(path))


@dataclass(eq=False)
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    enqueued: float
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Batch:
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    deadline: float = 0.0  # when the first task has waited batch_timeout_micros


@dataclass(eq=False)
class _Queue:  # as in TF Serving, the last batch is the open one (maybe empty)
    signature: str
    batches: deque[_Batch] = field(default_factory=lambda: deque([_Batch()]))


class BatchScheduler:
    """Merges concurrent :meth:`submit` calls into batches run by ``num_batch_threads``
    threads.

    ``run(signature, inputs) -> outputs`` runs one merged batch; every input and output
    has the batch as dimension 0. ``on_batch(signature, size, queue_seconds)`` is called
    once per merged batch after its run, with the size the model ran (padding included,
    like TF Serving's processed_batch_size metric) and each request's seconds in the queue.
    """

    def __init__(self, params: BatchingParameters, run: RunFn, *, name: str = "",
                 on_batch: OnBatchFn | None = None):
        self.params = params
        self.name = name
        self._run = run
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queues: OrderedDict[tuple, _Queue] = OrderedDict()
        self._waiting = 0  # tasks enqueued and not yet taken by a batch thread
        self._stopped = False
        prefix = params.thread_pool_name + (f"/{name}" if name else "")
        self._threads = [
            threading.Thread(target=self._work, name=f"{prefix}_{i}", daemon=True)
            for i in range(params.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def queue_depth(self) -> int:
        """Requests waiting for a batch thread (TF Serving's NumEnqueuedTasks)."""
        with self._cond:
            return self._waiting

    def submit(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs ``inputs`` in a batch with other requests and returns its own output rows.
        Raises :class:`RequestError` INVALID_ARGUMENT for inputs that cannot be batched,
        UNAVAILABLE when the queue is full or stopped, else what ``run`` raised for it."""
        arrays = {key: np.asarray(value) for key, value in inputs.items()}
        size = _task_size(arrays)
        limit = self.params.max_batch_size
        if size > limit:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"Task size {size} is "
                               f"larger than maximum input batch size {limit}")
        # Only requests that can be concatenated may meet in a batch.
        key = (signature, tuple(sorted((name, a.dtype.str, a.shape[1:])
                                       for name, a in arrays.items())))
        task = _Task(arrays, size, time.monotonic())
        with self._cond:
            if self._stopped:
                raise self._stopped_error()
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(signature)
            open_batch = queue.batches[-1]
            if open_batch.size + size > limit:
                # TF Serving counts the open batch among the enqueued ones.
                if len(queue.batches) >= self.params.max_enqueued_batches:
                    raise RequestError(
                        grpc.StatusCode.UNAVAILABLE,
                        "The batch scheduling queue to which this task was submitted is "
                        f"full; currently {len(queue.batches)} batches enqueued and "
                        f"max_enqueued_batches is {self.params.max_enqueued_batches}")
                open_batch = _Batch()
                queue.batches.append(open_batch)
            if not open_batch.tasks:
                open_batch.deadline = task.enqueued + self.params.batch_timeout_seconds
            open_batch.tasks.append(task)
            open_batch.size += size
            self._waiting += 1
            # A new batch, a new deadline or a full batch: idle threads must look again.
            if len(open_batch.tasks) == 1 or open_batch.size >= limit:
                self._cond.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        assert task.outputs is not None
        return task.outputs

    def stop(self, timeout: float | None = None) -> None:
        """Stops the batch threads; waiting requests fail with UNAVAILABLE. Batches
        already running finish; ``timeout`` (seconds) bounds the wait for them."""
        with self._cond:
            self._stopped = True
            pending = [task for queue in self._queues.values()
                       for batch in queue.batches for task in batch.tasks]
            self._queues.clear()
            self._waiting = 0
            self._cond.notify_all()
        for task in pending:
            task.error = self._stopped_error()
            task.done.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(None if deadline is None
                            else max(0.0, deadline - time.monotonic()))

    def _stopped_error(self) -> RequestError:
        label = f" for {self.name}" if self.name else ""
        return RequestError(grpc.StatusCode.UNAVAILABLE, f"The batch scheduler{label} is "
                            "stopped (the server is shutting down); the request was not run")

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    signature, batch, wake = self._take_batch()
                    if batch is not None:
                        break
                    self._cond.wait(None if wake is None
                                    else max(0.0, wake - time.monotonic()))
            try:
                self._process(signature, batch)
            except BaseException as err:  # never leave callers waiting for ever
                log.exception("batch of %s failed unexpectedly", signature)
                for task in batch.tasks:
                    if not task.done.is_set():
                        task.error = err
                        task.done.set()

    def _take_batch(self) -> tuple[str, _Batch | None, float | None]:
        """Under the lock: a batch ready to run (queues served round-robin), else the
        earliest time an open batch times out."""
        now = time.monotonic()
        wake = None
        for key, queue in list(self._queues.items()):
            batches = queue.batches
            open_batch = batches[-1]
            ready = len(batches) > 1 or (open_batch.tasks and (
                open_batch.size >= self.params.max_batch_size or open_batch.deadline <= now))
            if ready:
                batch = batches.popleft()
                if not batches:
                    batches.append(_Batch())
                self._waiting -= len(batch.tasks)
                if len(batches) == 1 and not batches[0].tasks:
                    del self._queues[key]  # idle queues go, so shapes cannot pile up
                else:
                    self._queues.move_to_end(key)
                return queue.signature, batch, None
            if open_batch.tasks:
                wake = open_batch.deadline if wake is None else min(wake, open_batch.deadline)
        return "", None, wake

    def _process(self, signature: str, batch: _Batch) -> None:
        tasks = batch.tasks
        started = time.monotonic()
        padded = _padded_size(batch.size, self.params.allowed_batch_sizes)
        try:
            outputs = self._run(signature, _merge(tasks, padded - batch.size))
        except RequestError as err:
            if len(tasks) == 1 and padded == batch.size:
                tasks[0].error = err
            else:  # find the culprit(s): each request alone gets its own answer
                for task in tasks:
                    self._run_alone(signature, task)
        except Exception as err:
            for task in tasks:
                task.error = err
        else:
            try:
                pieces = _split(outputs, [task.size for task in tasks], padded)
                for task, piece in zip(tasks, pieces, strict=True):
                    task.outputs = piece
            except RequestError as err:
                for task in tasks:
                    task.error = err
        try:
            if self._on_batch is not None:
                self._on_batch(signature, padded, [started - task.enqueued for task in tasks])
        except Exception:
            log.exception("on_batch callback failed")
        for task in tasks:
            task.done.set()

    def _run_alone(self, signature: str, task: _Task) -> None:
        try:
            outputs = self._run(signature, dict(task.inputs))
            task.outputs = _split(outputs, [task.size], task.size)[0]
        except Exception as err:
            task.error = err


def _task_size(arrays: Mapping[str, np.ndarray]) -> int:
    """The shared dimension 0 of a request's inputs, checked as TF Serving's
    BatchingSession checks it."""
    problem = ("must have at least one input tensor" if not arrays else
               "input tensors must have at least one dimension"
               if any(a.ndim == 0 for a in arrays.values()) else
               "input tensors must have equal 0th-dimension size"
               if len({a.shape[0] for a in arrays.values()}) > 1 else None)
    if problem:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"Batching Run() {problem}")
    return next(iter(arrays.values())).shape[0]


def _padded_size(size: int, allowed: tuple[int, ...]) -> int:
    """The smallest allowed batch size that holds ``size`` rows."""
    if size == 0:
        return 0
    return next((a for a in allowed if a >= size), size)


def _merge(tasks: list[_Task], padding: int) -> dict[str, np.ndarray]:
    merged = {}
    # TF Serving pads with copies of the first row of the last task (a valid input row);
    # a zero-row task has none, so take the last task that has rows.
    source = next((t for t in reversed(tasks) if t.size), tasks[-1])
    for name in tasks[0].inputs:
        parts = [task.inputs[name] for task in tasks]
        if padding:
            parts.append(np.repeat(source.inputs[name][:1], padding, axis=0))
        merged[name] = np.concatenate(parts, axis=0)
    return merged


def _split(outputs: Mapping[str, np.ndarray], sizes: list[int],
           padded: int) -> list[dict[str, np.ndarray]]:
    """Each task's rows of the batch's outputs; the padding rows are dropped."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    for value in arrays.values():
        if value.ndim == 0 or value.shape[0] != padded:
            raise RequestError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                f"dimension sizes of the input tensors (expected {padded} rows, got shape "
                f"{list(value.shape)})")
    pieces, start = [], 0
    for size in sizes:
        pieces.append({name: value[start:start + size] for name, value in arrays.items()})
        start += size
    return pieces
