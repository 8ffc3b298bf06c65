"""Concurrent clients, and a new version exported while they run.

Counted, not timed: every client completes a number of requests before the export, and
again once the new version is served (the loops are bounded only to catch a hang)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.client import SpadeClient
from serving.server import SpadeServer
from spade_tf import signatures as sig
from spade_tf.export import export_model

THREADS = 8
REQUESTS = 5  # each client's, at full rate, before the export and again after the switch
# On a 2-core machine a saturating load starves the export and the load of the new version
# (a minute instead of seconds), so meanwhile the clients keep going at a gentler pace:
# still 8 concurrent clients, with requests in flight when the version is swapped.
PACE_DURING_SWITCH = 0.4
HANG = 120.0  # seconds: a bound on each wait that only a hang reaches
DEADLINE = 30.0


class LoadClients:
    """``THREADS`` clients calling the seeded signature and checking every image."""

    def __init__(self, address: str, model_name: str, requests: list[dict],
                 expected: list[np.ndarray]):
        self.address, self.model_name = address, model_name
        self.requests, self.expected = requests, expected
        self.stop = threading.Event()
        self.paced = threading.Event()
        self.versions: list[list[int]] = [[] for _ in range(THREADS)]
        self.failures: list[str] = []
        self.wrong: list[int] = []
        self.threads = [threading.Thread(target=self._loop, args=(i,), daemon=True)
                        for i in range(THREADS)]

    def _loop(self, index: int) -> None:
        # retries=0: an UNAVAILABLE during the swap counts as a failure too.
        with SpadeClient(self.address, self.model_name, timeout=DEADLINE, retries=0) as client:
            count = index
            while not self.stop.is_set():
                which = count % len(self.requests)
                count += 1
                try:
                    result = client.predict(self.requests[which], sig.SEEDED_SIGNATURE)
                except Exception as error:  # any failure is a test failure
                    self.failures.append(f"client {index}: {error!r}")
                    continue
                if not np.array_equal(result.outputs[sig.IMAGE], self.expected[which]):
                    self.wrong.append(which)
                self.versions[index].append(result.version)
                if self.paced.is_set():
                    self.stop.wait(PACE_DURING_SWITCH)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(DEADLINE)

    def all_on(self, version: int) -> bool:
        return all(served and served[-1] == version for served in self.versions)

    def each_served(self, count: int, version: int | None = None) -> bool:
        """Whether every client has had ``count`` answers (from ``version``)."""
        return all(sum(version is None or served == version for served in answers) >= count
                   for answers in self.versions)

    def wait_until(self, done, what: str) -> None:
        """Until ``done()``; a failure of any client ends the wait at once."""
        waited = threading.Event()
        for _ in range(int(HANG / 0.05)):
            assert not self.failures, self.failures[:3]
            if done():
                return
            waited.wait(0.05)
        raise AssertionError(f"hung: no {what} after {HANG:.0f} s")

    @property
    def total(self) -> int:
        return sum(len(served) for served in self.versions)


@pytest.mark.timeout(180)
def test_concurrent_load_with_a_new_version_has_no_failures(tmp_path, vae_model, copy_version):
    base = tmp_path / "exports" / vae_model.name
    copy_version(vae_model, base, 1)
    requests = [{**vae_model.random_maps(seed=100 + i, batch=1 + i % 2),
                 sig.SEED: np.arange(i, i + 1 + i % 2, dtype=np.int64)} for i in range(4)]
    expected = [vae_model.in_process(sig.SEEDED_SIGNATURE, **inputs)[sig.IMAGE]
                for inputs in requests]
    server = SpadeServer(base, vae_model.name, port=0, poll_seconds=0.25, workers=THREADS)
    server.start()
    clients = LoadClients(server.address, vae_model.name, requests, expected)
    try:
        clients.start()
        clients.wait_until(lambda: clients.each_served(REQUESTS),
                           f"{REQUESTS} answers to each client")
        clients.paced.set()
        # Exported from the same model folder, so the expected images stay the same. The
        # warm-up records matter: without them the first requests on the new version pay for
        # graph optimisation, seconds each on 2 busy cores.
        assert export_model(vae_model.model_dir, base.parent, vae_model.name).name == "2"
        clients.wait_until(lambda: server.manager.current.version == 2, "switch to version 2")
        clients.paced.clear()
        clients.wait_until(lambda: clients.each_served(REQUESTS, version=2),
                           f"{REQUESTS} answers from version 2 to each client")
    finally:
        clients.join()
        status = server.manager.states(model_pb2.ModelSpec(name=vae_model.name))
        server.stop(grace=2.0).wait(10)
    assert clients.failures == [], clients.failures[:3]
    assert clients.wrong == []
    assert clients.all_on(2)
    assert all(served[0] == 1 and served == sorted(served) for served in clients.versions), \
        "each client must see version 1, then only version 2"
    assert {1: status[1].state, 2: status[2].state} == {
        1: get_model_status_pb2.ModelVersionStatus.END,
        2: get_model_status_pb2.ModelVersionStatus.AVAILABLE}
