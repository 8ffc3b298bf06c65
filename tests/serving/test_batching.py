"""serving.batching: TF Serving's batching parameters file and the batch scheduler.

No model: ``run`` is a deterministic row-wise numpy function, so a merged batch must give
every caller exactly the rows it would get alone.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from pathlib import Path

import grpc
import numpy as np
import pytest

from serving.batching import (
    BatchingConfigError,
    BatchingParameters,
    BatchScheduler,
    load_batching_parameters,
)
from serving.model_manager import RequestError
from spade_tf.errors import SpadeError

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # generous bound for anything that must happen "soon"


def rowwise(signature, inputs):
    """Deterministic and row-wise; a negative value is a bad request (like a bad label id)."""
    x = inputs["x"]
    if (x < 0).any():
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"values must be >= 0; found {int(x.min())} in {len(x)} rows")
    flat = x.reshape(len(x), -1).astype(np.int64)
    return {"y": x * 3 + 1, "total": flat.sum(axis=1) + len(signature)}


class Recorder:
    """``run`` wrapper that records every call (signature and merged inputs)."""

    def __init__(self, fn=rowwise, gate: threading.Event | None = None):
        self.fn, self.gate = fn, gate
        self.calls: list[tuple[str, dict[str, np.ndarray]]] = []
        self.started = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, signature, inputs):
        with self.lock:
            self.calls.append((signature, {k: v.copy() for k, v in inputs.items()}))
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        return self.fn(signature, inputs)

    @property
    def sizes(self):
        return [len(inputs["x"]) for _, inputs in self.calls]


def background(fn, *args) -> Future:
    """``fn(*args)`` in a daemon thread: a stuck ``submit`` fails its test (``result``
    times out) instead of hanging the whole run."""
    future: Future = Future()

    def target():
        try:
            future.set_result(fn(*args))
        except BaseException as err:
            future.set_exception(err)

    threading.Thread(target=target, daemon=True).start()
    return future


@pytest.fixture
def make_scheduler():
    made = []

    def make(run, **params):
        params.setdefault("num_batch_threads", 2)
        scheduler = BatchScheduler(BatchingParameters(**params), run, name="test")
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.stop(timeout=WAIT)


def wait_until(predicate, what):
    end = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


def concurrently(fn, args):
    """``fn(*a)`` for each ``a`` in its own thread, all released together; results or
    exceptions in order."""
    barrier = threading.Barrier(len(args))

    def call(a):
        barrier.wait(WAIT)
        try:
            return fn(*a)
        except Exception as err:
            return err

    futures = [background(call, a) for a in args]
    return [future.result(WAIT) for future in futures]


def submit(scheduler, signature, inputs):
    return background(scheduler.submit, signature, inputs).result(WAIT)


def busy_thread(scheduler, run):
    """Occupies the (only) batch thread with a "blocker" batch until ``run.gate`` is set,
    so requests submitted meanwhile pile up in the queues in a known order."""
    future = background(scheduler.submit, "blocker", {"x": np.zeros((1, 1), np.int8)})
    assert run.started.wait(WAIT)
    return future


def assert_same(got, expected):
    assert isinstance(got, dict), got
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
        assert got[name].dtype == expected[name].dtype


# -- the parameters file -------------------------------------------------------------------


def test_real_deploy_file_gives_its_values():
    params = load_batching_parameters(ROOT / "serving/deploy/batching_parameters.txt")
    assert params.max_batch_size == 8
    assert params.batch_timeout_micros == 5000
    assert params.max_enqueued_batches == 8
    assert params.num_batch_threads == 2
    assert params.allowed_batch_sizes == (1, 2, 4, 8)
    assert params.pad_variable_length_inputs is False


def test_absent_fields_take_tf_serving_defaults(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text("# only a comment\nthread_pool_name { value: 'gpu' }\n")
    params = load_batching_parameters(path)
    assert (params.max_batch_size, params.batch_timeout_micros,
            params.max_enqueued_batches) == (1000, 0, 10)
    assert params.num_batch_threads >= 1
    assert params.thread_pool_name == "gpu"
    assert params.allowed_batch_sizes == () and params.pad_variable_length_inputs is False
    path.write_text("allowed_batch_sizes: [2, 1000]\nmax_execution_batch_size { value: 4 }\n"
                    "enable_large_batch_splitting { value: false }\n")
    assert load_batching_parameters(path).allowed_batch_sizes == (2, 1000)


@pytest.mark.parametrize("text, expected", [
    ("max_batch_size { value: x }", ["1:25", "Couldn't parse integer"]),
    ("\nmax_batch_sise { value: 8 }", ["2:1", 'no field named "max_batch_sise"']),
    ("max_batch_size { value: 0 }", ["max_batch_size must be at least 1, got 0"]),
    ("num_batch_threads { value: -2 }", ["num_batch_threads must be at least 1"]),
    ("max_enqueued_batches { value: 0 }", ["max_enqueued_batches must be at least 1"]),
    ("batch_timeout_micros { value: -1 }", ["batch_timeout_micros must be 0 or more"]),
    ("max_batch_size { value: 8 } allowed_batch_sizes: [1, 4, 2, 8]",
     ["strictly increasing", "[1, 4, 2, 8]"]),
    ("max_batch_size { value: 8 } allowed_batch_sizes: [0, 8]", ["positive"]),
    ("max_batch_size { value: 8 } allowed_batch_sizes: [2, 4]",
     ["Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; "
      "expected 8"]),
    ("allowed_batch_sizes: 8", ["last entry was 8; expected 1000"]),
    ("enable_large_batch_splitting { value: true }", ["not supported", "remove it"]),
])
def test_bad_files_name_the_file_the_problem_and_the_fix(tmp_path, text, expected):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    with pytest.raises(BatchingConfigError) as info:
        load_batching_parameters(path)
    assert isinstance(info.value, SpadeError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith(f"{path}:")  # a parse error adds LINE:COLUMN
    for part in expected:
        assert part in message


def test_missing_file(tmp_path):
    with pytest.raises(BatchingConfigError, match="batching parameters file .*nope.txt does "
                                                  "not exist: give the path of a text-format "
                                                  "BatchingParameters"):
        load_batching_parameters(tmp_path / "nope.txt")


def test_parameters_built_in_code_are_checked_too():
    with pytest.raises(BatchingConfigError, match="^batching parameters: Last entry"):
        BatchingParameters(max_batch_size=4, allowed_batch_sizes=[1, 2])


# -- the scheduler -------------------------------------------------------------------------



def test_full_batches_close_without_waiting_for_the_timeout(make_scheduler):
    run = Recorder()
    scheduler = make_scheduler(run, max_batch_size=8, batch_timeout_micros=60_000_000)
    xs = [np.full((1, 3), i, np.int32) for i in range(16)]
    results = concurrently(scheduler.submit, [("sig", {"x": x}) for x in xs])
    for x, got in zip(xs, results, strict=True):
        assert_same(got, rowwise("sig", {"x": x}))
    assert run.sizes == [8, 8]  # 16 requests, two runs: only full batches, no timeout


def test_merged_answers_equal_unbatched_ones(make_scheduler):
    run = Recorder()
    batches = []
    scheduler = make_scheduler(run, max_batch_size=8, batch_timeout_micros=200_000)
    scheduler._on_batch = lambda sig, size, waits: batches.append((sig, size, len(waits)))
    rng = np.random.default_rng(0)
    xs = [rng.integers(0, 100, (int(n), 2, 2), np.int32) for n in rng.integers(1, 5, 16)]
    results = concurrently(scheduler.submit, [("sig", {"x": x}) for x in xs])
    for x, got in zip(xs, results, strict=True):
        assert_same(got, rowwise("sig", {"x": x}))
    assert len(run.calls) < len(xs), "no request was merged with another"
    assert all(size <= 8 for size in run.sizes)
    assert sum(run.sizes) == sum(len(x) for x in xs)
    assert [size for _, size, _ in batches] == run.sizes
    assert sum(n for _, _, n in batches) == len(xs)
    assert scheduler.queue_depth() == 0


def test_lone_request_is_not_held_for_company(make_scheduler):
    scheduler = make_scheduler(Recorder(), max_batch_size=8, batch_timeout_micros=20_000)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert_same(submit(scheduler, "sig", {"x": x}), rowwise("sig", {"x": x}))


def test_lone_requests_are_padded_to_the_next_allowed_size(make_scheduler):
    run = Recorder()
    scheduler = make_scheduler(run, max_batch_size=8, allowed_batch_sizes=(2, 4, 8))
    for rows in (1, 3, 5, 8):
        x = np.arange(rows * 2, dtype=np.int64).reshape(rows, 2) + 10
        assert_same(submit(scheduler, "sig", {"x": x}), rowwise("sig", {"x": x}))
    assert run.sizes == [2, 4, 8, 8]


def test_padding_repeats_the_first_row_of_the_last_request(make_scheduler):
    gate = threading.Event()
    run = Recorder(gate=gate)
    scheduler = make_scheduler(run, max_batch_size=8, allowed_batch_sizes=(4, 8),
                               num_batch_threads=1)
    blocker = busy_thread(scheduler, run)
    xs = [np.array([[1, 2]]), np.array([[3, 4], [5, 6]])]
    futures = []
    for i, x in enumerate(xs):
        futures.append(background(scheduler.submit, "sig", {"x": x}))
        wait_until(lambda n=i + 1: scheduler.queue_depth() == n, "requests to queue in order")
    gate.set()
    for x, future in zip(xs, futures, strict=True):
        assert_same(future.result(WAIT), rowwise("sig", {"x": x}))
    blocker.result(WAIT)
    np.testing.assert_array_equal(run.calls[1][1]["x"], [[1, 2], [3, 4], [5, 6], [3, 4]])


def test_full_queue_refuses_at_once_while_queued_requests_succeed(make_scheduler):
    gate = threading.Event()
    run = Recorder(gate=gate)
    scheduler = make_scheduler(run, max_batch_size=1, max_enqueued_batches=1,
                               num_batch_threads=1)
    xs = [np.full((1, 2), i, np.int32) for i in range(3)]
    running = background(scheduler.submit, "sig", {"x": xs[0]})
    assert run.started.wait(WAIT)  # the only batch thread is busy with xs[0]
    queued = background(scheduler.submit, "sig", {"x": xs[1]})
    wait_until(lambda: scheduler.queue_depth() == 1, "xs[1] to be queued")
    with pytest.raises(RequestError) as info:
        submit(scheduler, "sig", {"x": xs[2]})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.message == (
        "The batch scheduling queue to which this task was submitted is full; currently 1 "
        "batches enqueued and max_enqueued_batches is 1")
    gate.set()
    assert_same(running.result(WAIT), rowwise("sig", {"x": xs[0]}))
    assert_same(queued.result(WAIT), rowwise("sig", {"x": xs[1]}))


def test_a_bad_request_fails_alone_and_the_others_get_their_answers(make_scheduler):
    run = Recorder()
    scheduler = make_scheduler(run, max_batch_size=8, batch_timeout_micros=60_000_000)
    xs = [np.full((1, 2), i, np.int32) for i in range(8)]
    xs[5] = np.array([[4, -7]], np.int32)
    results = concurrently(scheduler.submit, [("sig", {"x": x}) for x in xs])
    for i, (x, got) in enumerate(zip(xs, results, strict=True)):
        if i == 5:
            assert isinstance(got, RequestError)
            assert got.code == grpc.StatusCode.INVALID_ARGUMENT
            assert got.message == "values must be >= 0; found -7 in 1 rows"  # its own run
        else:
            assert_same(got, rowwise("sig", {"x": x}))
    assert run.sizes == [8] + [1] * 8  # the merged run, then each request alone


def test_other_errors_reach_every_request_of_the_batch(make_scheduler):
    def broken(signature, inputs):
        raise MemoryError("out of memory")

    run = Recorder(broken)
    scheduler = make_scheduler(run, max_batch_size=2, batch_timeout_micros=60_000_000)
    results = concurrently(scheduler.submit,
                           [("sig", {"x": np.ones((1, 2), np.int32)})] * 2)
    assert all(isinstance(r, MemoryError) for r in results)
    assert run.sizes == [2]  # not retried one by one


def test_outputs_without_the_batch_dimension_are_refused(make_scheduler):
    scheduler = make_scheduler(lambda s, i: {"y": np.zeros(3)}, max_batch_size=8)
    with pytest.raises(RequestError, match="0th dimension does not equal") as info:
        submit(scheduler, "sig", {"x": np.ones((2, 1))})
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_different_shapes_dtypes_and_signatures_never_share_a_batch(make_scheduler):
    gate = threading.Event()
    run = Recorder(gate=gate)
    scheduler = make_scheduler(run, max_batch_size=8, num_batch_threads=1)
    blocker = busy_thread(scheduler, run)
    # rowwise's output depends on the signature's length and keeps the input's dtype, so a
    # request run with another kind would get a wrong value or dtype.
    kinds = [("a", (1, 3), np.int32), ("a", (2, 5), np.int32), ("a", (1, 3), np.int64),
             ("bb", (1, 3), np.int32)]
    args = [(sig, {"x": np.full(shape, i, dtype)})
            for i in range(3) for sig, shape, dtype in kinds]
    futures = [background(scheduler.submit, *a) for a in args]
    wait_until(lambda: scheduler.queue_depth() == len(args), "all requests to queue")
    gate.set()  # every request waits in the queues: each kind can merge only with its own
    for (sig, inputs), future in zip(args, futures, strict=True):
        assert_same(future.result(WAIT), rowwise(sig, inputs))
    blocker.result(WAIT)
    runs = sorted((sig, inputs["x"].shape, inputs["x"].dtype.name)
                  for sig, inputs in run.calls[1:])
    assert runs == [("a", (3, 3), "int32"), ("a", (3, 3), "int64"), ("a", (6, 5), "int32"),
                    ("bb", (3, 3), "int32")]


def test_bad_requests_are_refused_before_queueing(make_scheduler):
    run = Recorder()
    scheduler = make_scheduler(run, max_batch_size=8)
    cases = [
        ({"x": np.ones((9, 2))}, "Task size 9 is larger than maximum input batch size 8"),
        ({"x": np.ones((2, 2)), "z": np.ones(3)},
         "Batching Run() input tensors must have equal 0th-dimension size"),
        ({"x": np.float32(1)}, "Batching Run() input tensors must have at least one dimension"),
    ]
    for inputs, message in cases:
        with pytest.raises(RequestError) as info:
            submit(scheduler, "sig", inputs)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message == message
    assert run.calls == []


def test_stop_fails_waiting_requests_and_later_ones(make_scheduler):
    gate = threading.Event()
    run = Recorder(gate=gate)
    scheduler = make_scheduler(run, max_batch_size=1, num_batch_threads=1)
    assert all(t.daemon for t in scheduler._threads)
    x = np.ones((1, 2), np.int32)
    running = background(scheduler.submit, "sig", {"x": x})
    assert run.started.wait(WAIT)
    waiting = background(scheduler.submit, "sig", {"x": x + 1})
    wait_until(lambda: scheduler.queue_depth() == 1, "the second request to queue")
    scheduler.stop(timeout=0)
    with pytest.raises(RequestError) as info:
        waiting.result(WAIT)
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "stopped" in info.value.message
    with pytest.raises(RequestError) as info:
        submit(scheduler, "sig", {"x": x})
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    gate.set()  # the batch already running still finishes
    assert_same(running.result(WAIT), rowwise("sig", {"x": x}))
    scheduler.stop(timeout=WAIT)
    assert not any(t.is_alive() for t in scheduler._threads)
    assert scheduler.queue_depth() == 0
