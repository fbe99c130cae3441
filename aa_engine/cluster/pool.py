"""The remote engine's jobs on a pool of Ray actors: `aa_engine serve --listen ... --ray ADDRESS`.

The gateway (aa_engine/protocol/server.py) keeps the protocol, the token, the queue and the job
store, and holds no model. `RayExecutor` is its Executor (aa_engine/executor.py): one EngineWorker
actor per GPU of the cluster (`num_gpus=1`), or per CPU when it has no GPU (`num_cpus=1`), each with
its weights loaded once. The queue runs as many jobs at once as there are workers; each job's events
stream back from its worker as it makes them.

Faults: a worker (its process, or its whole node) that dies mid-job is dropped and the job waits for
the next free worker, which resumes it from the job folder: the frames already written are kept
and the denoising restarts from the last step's checkpoint (`.resume/state.pt`), so nothing
finished is recomputed and the frames equal an uninterrupted run's. The job folder lives in the
gateway's work root, which must be on storage every node mounts at the same path (checked at
start). After `max_failures` lost workers a job fails with a `worker_lost` error. Lost workers are
replaced when the cluster has room (a restarted node, a new one).

Window parallelism: with `window_workers` K > 1, a job whose shot has several context windows takes
up to K-1 idle workers as helpers (never one a queued job is waiting for) and splits each step's
windows with them (aa_engine/cluster/window_parallel.py): the same frames, sooner.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aa_engine.errors import Cancelled, EngineError
from aa_engine.jobs import Emit, JobSpec

log = logging.getLogger(__name__)


class WorkerLost(EngineError):
    code = "worker_lost"


class ClusterError(EngineError):
    code = "cluster"


@dataclass(eq=False)
class Worker:
    name: str
    actor: object
    node: str | None = None
    host: str = ""
    busy: bool = False
    alive: bool = True
    info: dict = field(default_factory=dict)  # EngineWorker.identity()
    last_used: float = 0.0  # jobs go to the idle worker unused for longest: they spread over the pool


@dataclass
class JobRecord:
    """What the pool did for one job (for tests, the benchmark and the log)."""

    key: str
    attempts: list[dict] = field(default_factory=list)  # one per worker tried: name, node, outcome
    traffic: dict | None = None


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise ClusterError("--ray needs Ray, which is not installed in the engine's environment.",
                           "pip install -e '.[cluster]' (or pip install ray==2.60.0) in the engine's venv; see docs/cluster.md.") from exc
    return ray


def _lost_errors(ray) -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the worker (or its node) is gone", not "the job failed"."""
    e = ray.exceptions
    return tuple(getattr(e, name) for name in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                               "ActorUnschedulableError", "LocalRayletDiedError") if hasattr(e, name))


class RayExecutor:
    """An Executor whose jobs run on Ray actors. Connects to the cluster and starts the workers in
    the constructor (a clear ClusterError when it cannot); `close()` stops them."""

    def __init__(self, address: str | None, weights: str | None, device: str = "auto", dtype: str = "auto", *,
                 work_root: str | Path | None = None, max_workers: int | None = None, max_failures: int = 3,
                 window_workers: int = 1, threads: int | None = None, start_timeout: float = 600.0, event_buffer: int = 64,
                 init_kwargs: dict | None = None):
        if address == "local":
            # Ray then takes this machine to be 127.0.0.1 (read when Ray loads): the private cluster's
            # processes listen on loopback only, not on every interface.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = _ray()
        if max_failures < 1:
            raise ClusterError(f"--ray-max-failures must be at least 1 (got {max_failures}).", "E.g. --ray-max-failures 3.")
        self.ray = ray
        self.weights_spec = weights
        self.device, self.dtype, self.threads = device, dtype, threads
        self.max_failures = max_failures
        self.window_workers = max(1, int(window_workers))
        self.max_workers = max_workers
        self.start_timeout = start_timeout
        # Events a worker may make before the gateway has taken them (Ray's generator backpressure):
        # enough that a job never waits on the gateway's round trip, few enough that nothing piles up.
        self.event_buffer = max(1, int(event_buffer))
        self.work_root = Path(work_root).resolve() if work_root else None
        self.records: dict[str, JobRecord] = {}
        self._lost = _lost_errors(ray)
        self._cond = threading.Condition()
        self._workers: list[Worker] = []
        self._waiting: collections.deque = collections.deque()  # tickets of run() calls waiting for a worker, first come first served
        self._names = (f"w{n}" for n in range(1, 1 << 30))
        self._closed = False
        self._connected_here = False
        self._connect(address, init_kwargs or {})
        self._use_gpus = self._cluster_gpus() > 0
        count = self._capacity()
        if max_workers:
            count = min(count, max_workers)
        if count < 1:
            raise ClusterError("The Ray cluster has no free GPU or CPU for a worker.",
                               "Add a node (`ray start --address HEAD:6379` on a GPU box), or free some resources; see docs/cluster.md.")
        self._start_workers(count)
        self.slots = len(self._workers)
        self._describe = self._check_workers()
        self._maintainer = threading.Thread(target=self._maintain, name="aa-ray-pool", daemon=True)
        self._maintainer.start()

    # -- connecting and starting workers ----------------------------------------------------------
    def _connect(self, address: str | None, init_kwargs: dict) -> None:
        ray = self.ray
        if ray.is_initialized():
            return  # this process is already a driver (tests, an embedding application)
        if address == "local":  # a private one-machine cluster: nothing of it listens beyond loopback
            init_kwargs = {"_node_ip_address": "127.0.0.1"} | init_kwargs
        try:
            ray.init(address=address, include_dashboard=False, **({"log_to_driver": True} | init_kwargs))
        except ConnectionError as exc:
            raise ClusterError(f"No Ray cluster at {address!r} ({exc}).",
                               "Start one with `ray start --head` (docs/cluster.md), or pass its address: --ray HEAD_IP:6379.") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. ray.exceptions.AuthenticationError
            if "authentication" in f"{type(exc).__name__} {exc}".lower():
                raise ClusterError(f"The Ray cluster at {address!r} refused this gateway's token ({exc}).",
                                   "Copy the cluster's token (~/.ray/auth_token on the head node, or `ray get-auth-token`) to this "
                                   "machine, or set RAY_AUTH_TOKEN; see docs/cluster.md.") from exc
            raise ClusterError(f"Cannot join the Ray cluster at {address!r}: {type(exc).__name__}: {exc}", "See docs/cluster.md.") from exc
        self._connected_here = True

    def _cluster_gpus(self) -> float:
        return float(self.ray.cluster_resources().get("GPU", 0))

    def _capacity(self) -> int:
        """How many more workers the cluster has room for now (whole GPUs, or whole CPUs without GPUs)."""
        free = self.ray.available_resources()
        return int(free.get("GPU", 0)) if self._use_gpus else int(free.get("CPU", 0))

    def _actor_class(self):
        from aa_engine.cluster.worker import EngineWorker

        resources = {"num_gpus": 1, "num_cpus": 1} if self._use_gpus else {"num_cpus": 1}
        # max_concurrency: a cancel (and a helper's calls) must get through while a job runs.
        return self.ray.remote(EngineWorker).options(**resources, max_concurrency=4, max_restarts=0, max_task_retries=0,
                                                     scheduling_strategy="SPREAD")

    def _start_workers(self, count: int) -> list[Worker]:
        """Start `count` actors and wait until each has loaded its weights; returns the new workers."""
        cls = self._actor_class()
        threads = self.threads if self.threads else (None if self._use_gpus else 1)
        device = self.device if self._use_gpus or self.device != "auto" else "cpu"
        started = [Worker(next(self._names), cls.remote(self.weights_spec, device, self.dtype, threads)) for _ in range(count)]
        ready = []
        for worker in started:
            try:
                info = self.ray.get(worker.actor.identity.remote(), timeout=self.start_timeout)
            except self.ray.exceptions.GetTimeoutError:
                self.ray.kill(worker.actor)
                log.warning("worker %s did not start within %.0f s; dropped", worker.name, self.start_timeout)
                continue
            except self._lost as exc:
                log.warning("worker %s died while starting: %s", worker.name, exc)
                continue
            if "error" in info:
                for other in started:
                    self.ray.kill(other.actor)
                error = info["error"]
                raise ClusterError(f"A worker on {info.get('host')} cannot load the weights: {error.get('message')}",
                                   error.get("hint") or "Put the same weights at the same path on every node (docs/cluster.md).")
            worker.node, worker.host, worker.info = info.get("node"), info.get("host", ""), info
            ready.append(worker)
        with self._cond:
            self._workers.extend(ready)
            self._cond.notify_all()
        for worker in ready:
            log.info("worker %s ready on %s (node %s, %s)", worker.name, worker.host, (worker.node or "?")[:8], worker.info["hello"]["device"])
        return ready

    def _check_workers(self) -> dict:
        """Every worker has the same weights, and sees the gateway's work root: else ClusterError."""
        workers = [w for w in self._workers if w.alive]
        if not workers:
            raise ClusterError("No worker could start on the Ray cluster.", "Check the workers' logs (`ray logs`), see docs/cluster.md.")
        identities = {w.info["weights_identity"] for w in workers}
        if len(identities) > 1:
            hosts = ", ".join(sorted({f"{w.host}: {w.info['weights_identity'][:12]}" for w in workers}))
            raise ClusterError(f"The workers have different weights ({hosts}).",
                               "Copy the same weights folder to the same path on every node (docs/cluster.md); a job resumed on "
                               "another worker must find the same weights.")
        if self.work_root is not None:
            self._check_shared(workers)
        self._identity = workers[0].info["weights_identity"]
        return dict(workers[0].info["hello"])

    def _check_shared(self, workers: list[Worker]) -> None:
        probe = self.work_root / f".ray-probe-{secrets.token_hex(8)}"
        text = secrets.token_hex(16)
        probe.write_text(text, encoding="utf-8")
        try:
            seen = self.ray.get([w.actor.read_probe.remote(str(probe)) for w in workers], timeout=60)
        finally:
            probe.unlink(missing_ok=True)
        blind = sorted({w.host for w, got in zip(workers, seen) if got != text})
        if blind:
            raise ClusterError(f"The work root {self.work_root} is not visible at the same path on {', '.join(blind)}.",
                               "Put the work root on storage every node mounts at the same path (NFS, CephFS ...) and pass it "
                               "with --work-root; workers read a job's inputs and write its frames and checkpoint there (docs/cluster.md).")

    # -- the Executor seam ------------------------------------------------------------------------
    def describe(self) -> dict:
        with self._cond:
            alive = sum(w.alive for w in self._workers)
        return {**self._describe, "workers": alive, "cluster": "ray"}

    def workers(self) -> list[Worker]:
        with self._cond:
            return [w for w in self._workers if w.alive]

    @staticmethod
    def job_key(spec: JobSpec) -> str:
        """The job's name on the workers: its id and its folder (two clients' jobs may share an id)."""
        return f"{spec.id}-{hashlib.sha256(str(spec.output).encode()).hexdigest()[:12]}"

    def record(self, spec: JobSpec) -> JobRecord | None:
        """What the pool did for the job's last run (workers tried, outcomes, traffic)."""
        return self.records.get(self.job_key(spec))

    def run(self, spec: JobSpec, emit: Emit, should_cancel: Callable[[], bool]) -> dict:
        key = self.job_key(spec)
        record = JobRecord(key)
        with self._cond:
            self.records.pop(key, None)
            self.records[key] = record
            while len(self.records) > 1000:  # a long-running gateway keeps the recent ones
                self.records.pop(next(iter(self.records)))
        failures = 0
        accepted_sent = False
        while True:
            lead, helpers = self._acquire(self._helpers_wanted(spec), should_cancel)
            attempt = {"worker": lead.name, "node": lead.node, "helpers": [h.name for h in helpers], "outcome": "running"}
            record.attempts.append(attempt)
            try:
                outcome = self._run_on(lead, helpers, spec, key, emit, should_cancel, accepted_sent, record)
            except self._lost as exc:
                failures += 1
                attempt["outcome"] = f"lost: {type(exc).__name__}"
                self._drop(lead, exc)
                for helper in helpers:  # the lead cannot tell them any more: they forget the job's reference pass
                    try:
                        helper.actor.help_release.remote(key)
                    except Exception:  # noqa: BLE001 - a dead helper holds nothing
                        pass
                self._release(helpers)
                if failures >= self.max_failures:
                    raise WorkerLost(
                        f"Job {spec.id!r} lost {failures} workers ({type(exc).__name__}), the most a job may lose; "
                        "the frames and checkpoint so far are kept in its folder.",
                        "Check the cluster's nodes (`ray status`) and send the job again: it resumes where it stopped. "
                        "The gateway's --ray-max-failures sets how many lost workers a job survives.") from exc
                log.warning("job %s: worker %s lost (%s); the job resumes on another worker from its checkpoint (%d/%d failures)",
                            spec.id, lead.name, type(exc).__name__, failures, self.max_failures)
                accepted_sent = accepted_sent or outcome_accepted(record)
                continue
            except BaseException:
                attempt["outcome"] = "stopped"
                self._release([lead, *helpers])
                raise
            attempt["outcome"] = "done"
            self._release([lead, *helpers])
            return outcome

    def _run_on(self, lead: Worker, helpers: list[Worker], spec: JobSpec, key: str, emit: Emit,
                should_cancel: Callable[[], bool], accepted_sent: bool, record: JobRecord) -> dict:
        ray = self.ray
        stream = lead.actor.run.options(_generator_backpressure_num_objects=self.event_buffer).remote(
            spec, key, [h.actor for h in helpers], self.event_buffer)
        stop_watch = threading.Event()

        def watch_cancel() -> None:
            while not stop_watch.wait(0.1):
                if should_cancel():
                    try:
                        lead.actor.cancel.remote(key)
                    except Exception:  # noqa: BLE001 - the worker is gone: the stream says so
                        pass
                    return

        watcher = threading.Thread(target=watch_cancel, name=f"aa-cancel-{key}", daemon=True)
        watcher.start()
        try:
            for ref in stream:
                item = ray.get(ref)
                kind = item[0]
                if kind == "event":
                    _, name, fields = item
                    if name == "accepted":
                        record.attempts[-1]["accepted"] = fields
                        if accepted_sent:
                            continue  # the client heard it from the first worker; frames_done carries on
                    emit(name, **fields)
                elif kind == "traffic":
                    record.traffic = item[1]
                    log.info("job %s: window parallelism on %d workers moved %d bytes per step", spec.id, item[1]["workers"],
                             item[1]["bytes_per_step"])
                elif kind == "done":
                    return item[1]
                elif kind == "cancelled":
                    raise Cancelled()
                elif kind == "error":
                    error = item[1]
                    raise EngineError(error.get("message", "?"), error.get("hint", ""), code=error.get("code", "internal"),
                                      field=error.get("field"))
                elif kind == "internal":
                    log.error("job %s failed on worker %s:\n%s", spec.id, lead.name, item[2])
                    raise RuntimeError(item[1])
            raise RuntimeError(f"worker {lead.name} ended job {spec.id!r} without a result")  # a bug, not a lost worker
        finally:
            stop_watch.set()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            workers, self._workers = list(self._workers), []
            self._cond.notify_all()
        for worker in workers:
            try:
                self.ray.kill(worker.actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._connected_here:
            self.ray.shutdown()

    # -- workers for a job ------------------------------------------------------------------------
    def _helpers_wanted(self, spec: JobSpec) -> int:
        if self.window_workers <= 1:
            return 0
        frames = _frame_count(spec)
        config = spec.config
        if frames is None:
            return self.window_workers - 1
        from aa_engine.cluster.window_parallel import split_windows, window_batch
        from aa_engine.pipeline.context_windows import context_windows

        windows = context_windows(frames, config.context_frames, config.context_overlap, config.context_loop)
        shares = split_windows(len(windows), self.window_workers, window_batch(config))
        return sum(1 for s in shares[1:] if len(s))

    def _acquire(self, helpers_wanted: int, should_cancel: Callable[[], bool]) -> tuple[Worker, list[Worker]]:
        """A free worker (first come, first served), and up to helpers_wanted more idle ones that no
        other job is waiting for. Raises Cancelled if the job is cancelled while it waits."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                warned = False
                while True:
                    if self._closed:
                        raise Cancelled()
                    idle = sorted((w for w in self._workers if w.alive and not w.busy), key=lambda w: w.last_used)
                    if idle and self._waiting[0] is ticket:
                        break
                    if should_cancel():
                        raise Cancelled()
                    if not warned and not any(w.alive for w in self._workers):
                        log.warning("no live worker: jobs wait until the cluster has room for one (a node restarted or added)")
                        warned = True
                    self._cond.wait(0.2)
                lead = idle[0]
                spare = idle[1:] if len(self._waiting) == 1 else []  # idle workers another waiting job needs stay free
                helpers = spare[:helpers_wanted]
                for w in [lead, *helpers]:
                    w.busy, w.last_used = True, time.monotonic()
                return lead, helpers
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()

    def _release(self, workers: list[Worker]) -> None:
        with self._cond:
            for w in workers:
                w.busy = False
            self._cond.notify_all()

    def _drop(self, worker: Worker, exc: BaseException) -> None:
        with self._cond:
            if self._closed:
                return  # close() killed it
            worker.alive = False
            worker.busy = False
            self._workers = [w for w in self._workers if w is not worker]
            self._cond.notify_all()
        try:
            self.ray.kill(worker.actor)
        except Exception:  # noqa: BLE001 - already gone
            pass
        log.warning("worker %s on %s dropped: %s", worker.name, worker.host, exc)

    def _maintain(self) -> None:
        """Every few seconds: drop workers whose actor died while idle, and start new ones while the
        cluster has room (up to max_workers), so the pool follows the cluster's resources."""
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(2.0)
                if self._closed:
                    return
                idle = [w for w in self._workers if w.alive and not w.busy]
            for worker in idle:
                try:
                    self.ray.get(worker.actor.identity.remote(), timeout=30)
                except self._lost as exc:
                    self._drop(worker, exc)
                except Exception:  # noqa: BLE001 - slow, not dead
                    pass
            try:
                room = self._capacity()
                with self._cond:
                    alive = sum(w.alive for w in self._workers)
                if self.max_workers:
                    room = min(room, self.max_workers - alive)
                if room > 0 and not self._closed:
                    new = self._start_workers(room)
                    for worker in new:
                        if worker.info["weights_identity"] != self._identity:
                            self._drop(worker, RuntimeError("other weights than the pool's"))
            except Exception:  # noqa: BLE001 - retried on the next round
                log.debug("pool maintenance failed", exc_info=True)


def outcome_accepted(record: JobRecord) -> bool:
    return any("accepted" in attempt for attempt in record.attempts)


def _frame_count(spec: JobSpec) -> int | None:
    """The shot's frame count without loading it, when the spec says (a list of maps or a track)."""
    from aa_contract.keypoints import KeypointTrack

    if isinstance(spec.poses, KeypointTrack):
        return len(spec.poses.frames)
    if isinstance(spec.poses, list):
        return len(spec.poses)
    path = Path(spec.poses)
    if path.is_dir():
        return sum(1 for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp", ".bmp"})
    return None
