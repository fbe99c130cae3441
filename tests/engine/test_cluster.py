"""Issue 9 on a real local Ray cluster: a head node and two 1-CPU worker nodes, all on loopback,
with Ray's token authentication on (a random token in RAY_AUTH_TOKEN, nothing written to ~/.ray).

Ray starts once for this module and the pool's two workers (random-tiny weights, one torch thread
each) load once; the tests then run jobs through them: six jobs from two clients over the remote
engine's sockets, a worker killed mid-job (its actor, then its whole node), a job over its failure
limit, and one shot split over both workers' windows. Each comparison is of the same job id, so
the PNGs (which carry the job's identity in a text chunk) can be compared byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aa_engine.cluster.pool import RayExecutor, WorkerLost
from aa_engine.config import GenerationConfig
from aa_engine.jobs import FRAME_NAME, JobSpec

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install -e '.[cluster]')", allow_module_level=True)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POSES = sorted((EXAMPLES / "poses").glob("*.png"))
NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 80 * 2**20}
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray then resolves this machine to 127.0.0.1: nothing listens beyond loopback
    "RAY_AUTH_MODE": "token",  # Ray's token authentication, as a studio cluster runs it ...
    "RAY_AUTH_TOKEN": secrets.token_hex(16),  # ... with a token of this test only
    "RAY_DEDUP_LOGS": "0",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    import ray  # after the environment is set: Ray reads its auth mode when it loads
    from ray._raylet import AuthenticationTokenLoader, Config
    from ray.cluster_utils import Cluster

    Config.initialize("")  # in case another module loaded Ray before: read the auth mode again
    AuthenticationTokenLoader.instance().reset_cache()
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={**NODE, "num_cpus": 0, "include_dashboard": False})
        cluster.nodes = [cluster.add_node(**NODE) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()  # only the processes this fixture started
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def work_root(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def pool(cluster, work_root):
    # event_buffer=1: a worker is at most one event ahead of the gateway, so a worker killed on an
    # event has not finished the job behind the test's back
    executor = RayExecutor(cluster.address, "random-tiny", "cpu", work_root=work_root, max_failures=3, start_timeout=300,
                           event_buffer=1)
    yield executor
    executor.close()


def spec(out: Path, job_id: str = "shot", frames: int = 8, steps: int = 2, **settings) -> JobSpec:
    config = GenerationConfig(**{"width": 32, "height": 32, "steps": steps, "context_frames": 4, "context_overlap": 1,
                                 "decode_batch": 1, **settings})
    return JobSpec(job_id, EXAMPLES / "reference.png", [POSES[i % len(POSES)] for i in range(frames)], out, config, video=False)


def frames(folder: Path, count: int) -> list[bytes]:
    return [(folder / FRAME_NAME.format(i)).read_bytes() for i in range(1, count + 1)]


def pixels(folder: Path, count: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / FRAME_NAME.format(i)), dtype=np.int16) for i in range(1, count + 1)])


def wait_workers(pool: RayExecutor, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while len(pool.workers()) < count:
        assert time.monotonic() < deadline, f"the pool has {len(pool.workers())} workers, not {count}"
        time.sleep(0.5)


class Recorder:
    """An emit that records events, and for each `frame` the file's identity when it arrived (a
    frame decoded again would be a new file)."""

    def __init__(self, folder: Path, on_event=None):
        self.folder = folder
        self.events: list[tuple[str, dict]] = []
        self.written: dict[int, tuple[int, int]] = {}
        self.on_event = on_event

    def __call__(self, event: str, **fields) -> None:
        self.events.append((event, fields))
        if event == "frame":
            assert fields["index"] not in self.written, f"frame {fields['index']} decoded twice"
            st = (self.folder / FRAME_NAME.format(fields["index"])).stat()
            self.written[fields["index"]] = (st.st_ino, st.st_mtime_ns)
        if self.on_event is not None:
            self.on_event(event, fields)

    def unchanged(self) -> bool:
        return all(((self.folder / FRAME_NAME.format(i)).stat().st_ino, (self.folder / FRAME_NAME.format(i)).stat().st_mtime_ns) == w
                   for i, w in self.written.items())


@pytest.fixture(scope="module")
def uninterrupted(pool, work_root):
    """The reference run of the fault tests' job (3 steps, 8 frames), on one worker."""
    job = spec(work_root / "reference", steps=3)
    pool.run(job, lambda *a, **k: None, lambda: False)
    return frames(job.output, 8)


# -- the pool -----------------------------------------------------------------------------------
def test_pool_has_one_warm_worker_per_cpu_and_the_gateway_no_model(pool):
    workers = pool.workers()
    assert pool.slots == 2 and len(workers) == 2
    assert len({w.node for w in workers}) == 2  # one per node: SPREAD over the cluster
    assert all(w.info["threads"] == 1 for w in workers)
    assert pool.describe()["model"] == "random-tiny" and pool.describe()["workers"] == 2
    assert not hasattr(pool, "pipe")


def test_six_jobs_from_two_clients_spread_over_two_workers(pool, work_root):
    from remote_helpers import RawClient, remote_job

    from aa_engine.job_store import JobStore
    from aa_engine.protocol.server import EngineServer, ServerConfig

    class Shared:  # the server closes its executor when it stops; the module's pool outlives it
        def __init__(self, executor):
            self.slots, self.describe, self.run = executor.slots, executor.describe, executor.run

        def close(self):
            pass

    token = secrets.token_urlsafe(24)
    server = EngineServer(Shared(pool), JobStore(work_root / "gateway"), ServerConfig(port=0, token=token))
    _, port = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clients = [RawClient(port, token), RawClient(port, token)]
    try:
        assert clients[0].hello["model"] == "random-tiny" and clients[0].hello["workers"] == 2
        before = set(pool.records)
        for n in range(6):
            clients[n % 2].send(remote_job(f"job{n}", frames=4, size=32, steps=1))
        done, deadline = {}, time.monotonic() + 600
        for k, client in enumerate(clients):
            messages = []
            while sum(m["type"] == "done" for m in messages) < 3:  # the jobs may end in any order
                messages.append(client.next(max(1.0, deadline - time.monotonic())))
                assert messages[-1]["type"] != "error", messages[-1]
            for n in range(k, 6, 2):
                done[f"job{n}"] = {m["index"] for m in messages if m["type"] == "frame" and m["id"] == f"job{n}"}
        assert sorted(done) == [f"job{n}" for n in range(6)]
        assert all(indexes == {1, 2, 3, 4} for indexes in done.values())  # every frame came back
        ran_on = {pool.records[key].attempts[-1]["worker"] for key in set(pool.records) - before}
        assert len(ran_on) == 2  # both workers ran jobs
    finally:
        for client in clients:
            client.close()
        server.stop()
        thread.join(60)


def test_cancel_stops_the_job_on_its_worker_and_frees_it(pool, work_root):
    from aa_engine.errors import Cancelled

    wait_workers(pool, 2)
    job = spec(work_root / "cancelled", steps=3)
    events = []

    def emit(event, **fields):
        events.append((event, fields))

    with pytest.raises(Cancelled):
        pool.run(job, emit, lambda: any(e == "progress" and f["stage"] == "denoise" and f["step"] >= 1 for e, f in events))
    assert not [e for e, _ in events if e == "frame"]  # stopped within the denoising
    assert (job.output / ".resume" / "state.pt").is_file()  # the checkpoint stays: a resend resumes
    assert pool.record(job).attempts[-1]["outcome"] == "stopped"
    assert len(pool.workers()) == 2 and not any(w.busy for w in pool.workers())


# -- faults -------------------------------------------------------------------------------------
def test_killed_worker_actor_the_job_resumes_on_the_other_one(pool, work_root, uninterrupted):
    wait_workers(pool, 2)
    job = spec(work_root / "actor-kill", steps=3)
    killed = []

    def kill_on_first_frame(event, fields):
        if event == "frame" and not killed:
            lead = next(w for w in pool.workers() if w.busy)
            killed.append(lead.name)
            pool.ray.kill(lead.actor)  # the worker process dies mid-decode

    recorder = Recorder(job.output, kill_on_first_frame)
    pool.run(job, recorder, lambda: False)
    attempts = pool.record(job).attempts
    assert [a["outcome"].split(":")[0] for a in attempts] == ["lost", "done"]
    assert attempts[0]["worker"] == killed[0] and attempts[1]["worker"] != killed[0]
    resumed = attempts[1]["accepted"]["resumed_frames"]
    assert resumed >= 1  # the frames the dead worker wrote were kept ...
    assert set(recorder.written) | set(range(1, resumed + 1)) == set(range(1, 9))  # ... and the rest made by the other
    assert frames(job.output, 8) == uninterrupted  # byte for byte
    assert recorder.unchanged()  # no frame was decoded and written twice
    # (the dead worker may have written one frame more than it could report: the next worker keeps it,
    # and the gateway sends it with the others at `done`)
    assert [e for e, _ in recorder.events].count("accepted") == 1  # the client hears `accepted` once


def test_removed_worker_node_the_job_resumes_from_its_denoising_checkpoint(pool, cluster, work_root, uninterrupted):
    wait_workers(pool, 2)
    job = spec(work_root / "node-removal", steps=3)
    removed = []

    def remove_node_after_first_step(event, fields):
        if event == "progress" and fields["stage"] == "denoise" and fields["step"] == 1 and not removed:
            lead = next(w for w in pool.workers() if w.busy)
            node = next(n for n in cluster.nodes if n.node_id == lead.node)
            removed.append(node)
            cluster.remove_node(node)  # the whole node goes: raylet, object store, the worker

    recorder = Recorder(job.output, remove_node_after_first_step)
    try:
        pool.run(job, recorder, lambda: False)
        attempts = pool.record(job).attempts
        assert [a["outcome"].split(":")[0] for a in attempts] == ["lost", "done"], attempts
        assert attempts[1]["node"] != removed[0].node_id
        resumed_at = [f["step"] for e, f in recorder.events if e == "progress" and f["stage"] == "denoise"]
        # 0, 1 from the first worker; the second starts at the checkpoint (step 1 or 2), not at 0
        assert resumed_at[:2] == [0, 1] and resumed_at[2] >= 1, resumed_at
        assert frames(job.output, 8) == uninterrupted
        assert recorder.unchanged() and sorted(recorder.written) == list(range(1, 9))
    finally:
        if removed:
            cluster.nodes = [n for n in cluster.nodes if n is not removed[0]] + [cluster.add_node(**NODE)]
    wait_workers(pool, 2)  # the pool follows the cluster: a worker starts on the new node


def test_a_job_fails_clearly_after_max_failures_lost_workers(pool, work_root):
    wait_workers(pool, 2)
    job = spec(work_root / "too-many-failures", steps=2)

    def kill_every_worker(event, **fields):
        if event == "progress" and fields["stage"] == "denoise":
            for worker in pool.workers():
                if worker.busy:
                    pool.ray.kill(worker.actor)

    pool.max_failures = 2
    try:
        with pytest.raises(WorkerLost) as raised:
            pool.run(job, kill_every_worker, lambda: False)
    finally:
        pool.max_failures = 3
    assert raised.value.code == "worker_lost"
    assert "lost 2 workers" in raised.value.message and "resumes where it stopped" in raised.value.hint
    assert len(pool.record(job).attempts) == 2
    wait_workers(pool, 2)  # both replaced on their nodes


# -- one shot over both workers ------------------------------------------------------------------
LONG_SHOT = dict(frames=22, steps=2)  # 7 context windows of 4 frames


@pytest.fixture(scope="module")
def long_shot_single(pool, work_root):
    wait_workers(pool, 2)
    single = spec(work_root / "windows-1", **LONG_SHOT)
    pool.window_workers = 1
    pool.run(single, lambda *a, **k: None, lambda: False)
    return single


def test_window_parallel_on_two_workers_equals_one_worker(pool, work_root, long_shot_single):
    wait_workers(pool, 2)
    single = long_shot_single
    split = spec(work_root / "windows-2", **LONG_SHOT)
    pool.window_workers = 2
    try:
        pool.run(split, lambda *a, **k: None, lambda: False)
    finally:
        pool.window_workers = 1
    record = pool.record(split)
    assert record.attempts[-1]["helpers"] and record.traffic["workers"] == 2 and record.traffic["fallback_windows"] == 0
    assert record.traffic["decoded_by_helpers"] == 11 and record.traffic["fallback_frames"] == 0  # the helper decoded half
    latents_bytes = 4 * 22 * 4 * 4 * 4  # (1, 4, 22, 4, 4) float32 out to the helper each step
    assert record.traffic["bytes_to_helpers"] == 2 * latents_bytes
    assert np.abs(pixels(split.output, 22) - pixels(single.output, 22)).max() == 0  # measured max abs difference: 0
    assert frames(split.output, 22) == frames(single.output, 22)


def test_a_helper_killed_mid_shot_its_windows_are_done_by_the_lead(pool, work_root, long_shot_single):
    wait_workers(pool, 2)
    split = spec(work_root / "windows-helper-killed", **LONG_SHOT)
    killed = []

    def kill_helper_after_first_step(event, **fields):
        if event == "progress" and fields["stage"] == "denoise" and fields["step"] == 1 and not killed:
            attempt = pool.record(split).attempts[-1]
            helper = next(w for w in pool.workers() if w.name in attempt["helpers"])
            killed.append(helper.name)
            pool.ray.kill(helper.actor)

    pool.window_workers = 2
    try:
        pool.run(split, kill_helper_after_first_step, lambda: False)
    finally:
        pool.window_workers = 1
    record = pool.record(split)
    assert killed and [a["outcome"] for a in record.attempts] == ["done"]  # the job itself never stopped
    # The lead runs on while the gateway kills the helper: step 2's helper share (3 windows) or only
    # the helper's half of the decode (11 frames) falls back to the lead, never lost.
    assert record.traffic["lost_helpers"] == 1 and record.traffic["fallback_windows"] in (0, 3)
    assert record.traffic["fallback_frames"] + record.traffic["decoded_by_helpers"] == 11 and record.traffic["fallback_frames"] > 0
    assert frames(split.output, 22) == frames(long_shot_single.output, 22)
    wait_workers(pool, 2)  # the dead helper is replaced
