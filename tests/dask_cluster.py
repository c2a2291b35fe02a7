"""A real Dask cluster on 127.0.0.1 for the tests: one `dask scheduler` and two `dask worker`
processes (no nanny: killing a worker's pid kills that worker), on free ports, torn down at the
end of the session. Workers declare resources cpu=4, mem=8e9."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import free_port

START_DEADLINE = 90.0


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)  # worker address -> process
    logdir: Path | None = None

    def start_worker(self, name: str) -> str:
        port = free_port()
        log = open(self.logdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [_dask(), "worker", self.address, "--no-nanny", "--nthreads", "8", "--host", "127.0.0.1",
             "--worker-port", str(port), "--no-dashboard", "--name", name, "--resources", "cpu=4 mem=8e9"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        address = f"tcp://127.0.0.1:{port}"
        self.workers[address] = proc
        return address

    def worker_addresses(self) -> set[str]:
        from distributed import Client
        with Client(self.address, timeout=30, set_as_default=False) as client:
            return set(client.scheduler_info(n_workers=-1)["workers"])

    def wait_workers(self, deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                if set(self.workers) <= self.worker_addresses():
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"Dask workers did not join in {deadline}s; see {self.logdir}")

    def kill_worker(self, address: str) -> None:
        proc = self.workers.pop(address)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _dask() -> str:
    return str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory):
    pytest.importorskip("distributed")
    logdir = tmp_path_factory.mktemp("dask")
    port = free_port()
    log = open(logdir / "scheduler.log", "ab")
    scheduler = subprocess.Popen(
        [_dask(), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    cluster = Cluster(f"tcp://127.0.0.1:{port}", scheduler, logdir=logdir)
    try:
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        cluster.wait_workers()
        yield cluster
    finally:
        cluster.stop()
