"""The remote engine's queue: jobs from every client, run by an Executor, highest priority first and
first in, first out among equals.

A `QueuedJob` belongs to the client that sent it (its `owner`, the random id from `auth`): only
that client can cancel it or collect it. Its events go to whoever is attached at the time (the
`listeners`); with nobody attached the job keeps running (detach) and its last `accepted`,
`progress` and final event are kept for whoever attaches later. Finished jobs stay until nobody has
touched them for `keep_s` seconds; then `expire` forgets them and the server removes their folders.

No sockets here: the server (aa_engine/protocol/server.py) turns listeners into connections.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from aa_engine.errors import Cancelled, EngineError, UserError
from aa_engine.executor import Executor
from aa_engine.jobs import JobSpec

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
Listener = Callable[["QueuedJob", dict], None]


class QueueFull(EngineError):
    code = "queue_full"


class NotFound(EngineError):
    code = "not_found"


@dataclass(eq=False)
class QueuedJob:
    id: str  # the client's name for it
    owner: str  # the client id from `auth`
    folder: str  # its folder name in the work root (aa_engine/job_store.py)
    spec: JobSpec
    digest: str  # hash of the job message (inputs and settings): a resend with the same digest re-attaches
    priority: int = 0
    frames_total: int | None = None
    seq: int = 0
    state: str = "queued"  # queued, running, done, error, cancelled
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    touched: float = field(default_factory=time.monotonic)
    accepted: dict | None = None  # the last `accepted` event (a re-attached client gets it again)
    progress: dict | None = None  # the last `progress` event
    final: dict | None = None  # done, error or cancelled
    frames_done: set[int] = field(default_factory=set)  # 1-based indexes on disk
    computed_frames: int = 0  # frames decoded here (not resumed from disk)
    cancel: threading.Event = field(default_factory=threading.Event)
    listeners: list[Listener] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def publish(self, event: dict) -> None:
        with self.lock:
            kind = event["type"]
            if kind == "accepted":
                self.accepted, self.frames_total = event, event.get("frames", self.frames_total)
                self.frames_done = set(range(1, event.get("resumed_frames", 0) + 1)) if event.get("resumed_frames") else set()
            elif kind == "progress":
                self.progress = event
            elif kind == "frame":
                self.frames_done.add(event["index"])
                self.computed_frames += 1
            for listener in list(self.listeners):
                try:
                    listener(self, event)
                except Exception:  # noqa: BLE001 - a broken connection must never stop the job
                    log.warning("dropping a listener of job %s:\n%s", self.id, traceback.format_exc())
                    self.listeners.remove(listener)

    def attach(self, listener: Listener, replay: Callable[["QueuedJob"], None]) -> None:
        """Add a listener; `replay(job)` runs first under the job's lock, so no event slips between."""
        with self.lock:
            self.touched = time.monotonic()
            replay(self)
            self.listeners.append(listener)

    def detach(self, listener: Listener) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)
            self.touched = time.monotonic()

    def work_units(self) -> float:
        """Work, for ETAs: frames x steps x pixels."""
        config = self.spec.config
        frames = self.frames_total or 16
        return float(frames * config.steps * (config.width or 512) * (config.height or 768))


class JobQueue:
    def __init__(self, executor: Executor, max_queued: int = 100, max_per_client: int = 20, keep_s: float = 3 * 86400):
        self.executor = executor
        self.max_queued = max_queued
        self.max_per_client = max_per_client
        self.keep_s = keep_s
        self._jobs: dict[tuple[str, str], QueuedJob] = {}
        self._pending: list[QueuedJob] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._seconds_per_unit: float | None = None  # measured on finished jobs, for ETAs
        self._stopping = False
        self._workers: list[threading.Thread] = []

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> None:
        for n in range(max(1, int(self.executor.slots))):
            worker = threading.Thread(target=self._work, name=f"aa-queue-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, cancel: bool = True, timeout: float | None = 30) -> None:
        with self._cond:
            self._stopping = True
            if cancel:
                for job in self._jobs.values():
                    job.cancel.set()
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    # -- what clients do --------------------------------------------------------------------------
    def find(self, owner: str, job_id: str) -> QueuedJob | None:
        with self._cond:
            return self._jobs.get((owner, job_id))

    def check_room(self, owner: str) -> None:
        """Raise QueueFull when the queue, or this client's share of it, is full."""
        with self._cond:
            waiting = [j for j in self._jobs.values() if j.active]
            if len(waiting) >= self.max_queued:
                raise QueueFull(f"The engine's queue is full ({self.max_queued} jobs).", "Wait for jobs to finish, or ask whoever runs the engine to raise --max-queued.")
            mine = [j for j in waiting if j.owner == owner]
            if len(mine) >= self.max_per_client:
                raise QueueFull(f"You have {len(mine)} jobs queued or running, the most one client may have ({self.max_per_client}).",
                                "Wait for some to finish, or cancel some.")

    def submit(self, job: QueuedJob) -> None:
        """Queue a job (replacing a finished one of the same owner and id). Raises QueueFull."""
        with self._cond:
            self.check_room(job.owner)
            old = self._jobs.get((job.owner, job.id))
            if old is not None and old.active:
                raise EngineError(f"Job {job.id!r} is still {old.state}.", "Cancel it first, or wait for it.", code="busy")
            job.seq = next(self._seq)
            job.state = "queued"
            self._jobs[(job.owner, job.id)] = job
            self._pending.append(job)
            self._pending.sort(key=lambda j: (-j.priority, j.seq))
            self._cond.notify()

    def cancel(self, owner: str, job_id: str) -> QueuedJob:
        """Cancel the owner's job: a queued one at once, a running one within one step. Raises NotFound."""
        with self._cond:
            job = self._jobs.get((owner, job_id))
            if job is None or not job.active:
                raise NotFound(f"You have no queued or running job {job_id!r}.", "A client can cancel only its own jobs; send `status` to list yours.")
            job.cancel.set()
            if job.state != "queued":
                return job
            self._pending.remove(job)
            job.state, job.finished = "cancelled", time.monotonic()
        with job.lock:
            job.final = {"type": "cancelled", "id": job.id, "frames_done": 0}
            job.publish(job.final)
        return job

    def position(self, job: QueuedJob) -> int | None:
        """0 running, 1 next, ...; None when finished."""
        with self._cond:
            if job.state == "running":
                return 0
            if job.state == "queued" and job in self._pending:
                return self._pending.index(job) + 1
            return None

    def eta(self, job: QueuedJob) -> float | None:
        """Seconds until the job starts (0 when it runs), from the measured speed; None until a job has finished."""
        with self._cond:
            if job.state == "running":
                return 0.0
            if self._seconds_per_unit is None or job not in self._pending:
                return None
            rate = self._seconds_per_unit
            now = time.monotonic()
            running = [j for j in self._jobs.values() if j.state == "running"]
            busy = sum(max(0.0, rate * j.work_units() - (now - (j.started or now))) for j in running)
            ahead = sum(rate * j.work_units() for j in self._pending[: self._pending.index(job)])
            return round((busy + ahead) / max(1, int(self.executor.slots)), 1)

    def snapshot(self, owner: str) -> dict:
        """The `queue` message's fields for this client: other clients' jobs are counted, never named."""
        with self._cond:
            running = [j for j in self._jobs.values() if j.state == "running"]
            mine = [j for j in self._jobs.values() if j.owner == owner]
            queued = len(self._pending)
        describe = []
        for j in sorted(mine, key=lambda j: j.seq):
            describe.append({"id": j.id, "state": j.state, "position": self.position(j), "eta_s": self.eta(j),
                             "priority": j.priority, "frames_done": len(j.frames_done), "frames_total": j.frames_total})
        run = None
        if running:
            j = running[0]
            run = {"frames_total": j.frames_total, "frames_done": len(j.frames_done), "stage": (j.progress or {}).get("stage"),
                   "eta_s": (j.progress or {}).get("eta_s"), "running_s": round(time.monotonic() - (j.started or time.monotonic()), 1)}
            if j.owner == owner:
                run["id"] = j.id
        return {"running": run, "running_jobs": len(running), "jobs": describe, "queued": queued}

    def expire(self) -> list[QueuedJob]:
        """Forget finished jobs nobody touched for keep_s seconds (the caller removes their folders)."""
        cutoff = time.monotonic() - self.keep_s
        with self._cond:
            old = [j for j in self._jobs.values() if not j.active and not j.listeners and j.touched < cutoff]
            for j in old:
                del self._jobs[(j.owner, j.id)]
        return old

    def folders(self) -> set[str]:
        with self._cond:
            return {j.folder for j in self._jobs.values()}

    def counts(self) -> dict:
        with self._cond:
            states = [j.state for j in self._jobs.values()]
        return {s: states.count(s) for s in ("queued", "running", "done", "error", "cancelled")}

    # -- running ----------------------------------------------------------------------------------
    def _take(self) -> QueuedJob | None:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            job = self._pending.pop(0)
            job.state, job.started = "running", time.monotonic()
            return job

    def _work(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            self._run(job)

    def _run(self, job: QueuedJob) -> None:
        def emit(event: str, **fields) -> None:
            job.publish({"type": event, "id": job.id, **fields})

        try:
            result = self.executor.run(job.spec, emit, job.cancel.is_set)
            final = {"type": "done", "id": job.id, **result, "computed_frames": job.computed_frames}
            state = "done"
        except Cancelled:
            final, state = {"type": "cancelled", "id": job.id, "frames_done": len(job.frames_done)}, "cancelled"
        except UserError as exc:
            final, state = {"type": "error", "id": job.id, **exc.to_dict()}, "error"
        except Exception as exc:  # noqa: BLE001 - the engine must survive a failed job
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            error = EngineError(f"Internal error: {exc.__class__.__name__}: {exc}", "This is a bug; the engine log has the traceback.", code="internal")
            final, state = {"type": "error", "id": job.id, **error.to_dict()}, "error"
        finished = time.monotonic()
        with self._cond:
            job.state, job.finished, job.touched = state, finished, finished
            if state == "done" and job.computed_frames:
                # Speed for ETAs: the share of the work this run did (resumed frames cost nothing).
                share = job.computed_frames / max(1, job.frames_total or job.computed_frames)
                rate = (finished - job.started) / max(1.0, job.work_units() * share)
                self._seconds_per_unit = rate if self._seconds_per_unit is None else 0.5 * (self._seconds_per_unit + rate)
        with job.lock:
            job.final = final
            job.publish(final)
