"""One warm engine in a Ray actor: the weights load once, then it runs jobs for the pool
(aa_engine/cluster/pool.py) and, for another worker's long shot, its share of each step's windows.

The class is plain Python (the pool makes it an actor with `ray.remote(...)` and the resources of
one GPU, or one CPU); it reads a job's inputs and writes its frames and checkpoint in the job's
folder, which is in the gateway's work root on storage every node mounts at the same path.

`run` is a generator: Ray streams its items back to the gateway as the job makes them, so progress
and frames reach the client as they happen. Items are tuples:

    ("event", name, fields)     an event of run_job (accepted, progress, frame ...)
    ("traffic", dict)           window parallelism: bytes moved (aa_engine/cluster/window_parallel.py)
    ("done", result)            the end: run_job's `done` fields
    ("cancelled",)              the end: the gateway asked to cancel
    ("error", error_dict)       the end: a user error (EngineError.to_dict())
    ("internal", text, traceback)  the end: a bug
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import traceback

log = logging.getLogger(__name__)

FINAL = ("done", "cancelled", "error", "internal")


class EngineWorker:
    def __init__(self, weights: str | None, device: str = "auto", dtype: str = "auto", threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.error: dict | None = None
        self.pipe = self.weights = None
        self._cancel: dict[str, threading.Event] = {}
        self._helping: dict[str, tuple] = {}
        try:
            from aa_engine.device import pick_device, pick_dtype
            from aa_engine.pipeline import AnimateAnyonePipeline
            from aa_engine.weights import load_model

            picked = pick_device(device)
            model, info = load_model(weights)
            self.pipe = AnimateAnyonePipeline(model, picked, pick_dtype(dtype, picked))
            self.weights = info
        except Exception as exc:  # noqa: BLE001 - reported by identity(), so the gateway can say what is wrong
            from aa_engine.errors import UserError

            self.error = exc.to_dict() if isinstance(exc, UserError) else {
                "code": "internal", "message": f"{type(exc).__name__}: {exc}", "hint": "The worker's log has the traceback."}
            log.error("loading the weights failed:\n%s", traceback.format_exc())

    # -- what the pool asks first -----------------------------------------------------------------
    def identity(self) -> dict:
        """hello fields, weights identity and where this worker runs (or `error`)."""
        import torch

        where = {"host": socket.gethostname(), "pid": os.getpid(), "threads": torch.get_num_threads()}
        try:
            import ray

            where["node"] = ray.get_runtime_context().get_node_id()
        except Exception:  # noqa: BLE001 - outside Ray (tests of the class itself)
            where["node"] = None
        if self.error is not None:
            return {"error": self.error, **where}
        from aa_engine.executor import hello_fields

        return {"hello": hello_fields(self.pipe, self.weights), "weights_identity": self.weights.identity, **where}

    def read_probe(self, path: str) -> str | None:
        """The text of a file the gateway wrote in its work root (None if this node cannot see it)."""
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read()
        except OSError:
            return None

    # -- a job -----------------------------------------------------------------------------------
    def run(self, spec, key: str, helpers: list = (), buffer: int = 1):
        """Run one job (aa_engine.jobs.run_job), streaming its events; `helpers` are other
        workers' actor handles to split each step's windows with. Yields the items above."""
        from aa_engine.errors import Cancelled, UserError
        from aa_engine.jobs import run_job

        items: queue.Queue = queue.Queue(maxsize=buffer)  # run_job waits when the gateway lags `buffer` events behind
        cancel = self._cancel[key] = threading.Event()

        def emit(event: str, **fields) -> None:
            items.put(("event", event, fields))

        def target() -> None:
            transport = None
            try:
                pipe = self.pipe
                if helpers:
                    from aa_engine.cluster.window_parallel import TrafficLog, window_parallel_pipeline

                    transport = RayHelpers(list(helpers), key, spec)
                    traffic = TrafficLog()
                    pipe = window_parallel_pipeline(self.pipe, transport, traffic, on_prepare=transport.wait_prepared)
                result = run_job(pipe, self.weights.identity, spec, emit, cancel.is_set)
                if transport is not None:
                    items.put(("traffic", {**traffic.to_dict(), "workers": transport.workers, "lost_helpers": transport.lost}))
                items.put(("done", result))
            except Cancelled:
                items.put(("cancelled",))
            except UserError as exc:
                items.put(("error", exc.to_dict()))
            except BaseException as exc:  # noqa: BLE001 - the gateway reports it and keeps serving
                items.put(("internal", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            finally:
                if transport is not None:
                    transport.release()

        thread = threading.Thread(target=target, name=f"aa-job-{key}", daemon=True)
        thread.start()
        try:
            while True:
                item = items.get()
                yield item
                if item[0] in FINAL:
                    return
        finally:
            cancel.set()  # the gateway stopped listening: stop at the next window
            self._cancel.pop(key, None)

    def cancel(self, key: str) -> bool:
        """Ask the running job `key` to stop at its next window; False if it is not running here."""
        event = self._cancel.get(key)
        if event is not None:
            event.set()
        return event is not None

    # -- helping another worker's job: its share of each step's windows ---------------------------
    def help_prepare(self, key: str, spec) -> int:
        """The reference pass for job `key` on this worker (once per job); returns its frame count."""
        from aa_engine.jobs import load_poses, load_reference

        config = spec.config.sized_for(self.pipe.model.config)
        reference = load_reference(spec.reference)
        poses, _ = load_poses(spec.poses, (config.width, config.height))
        self._helping[key] = (self.pipe.prepare(reference, poses, config), config)
        return len(poses)

    def help_predict(self, key: str, latents, t, windows: list[list[int]]) -> list:
        """The guided predictions (on the CPU) of `windows` at timestep t given the step's latents."""
        prepared, config = self._helping[key]
        return [p.cpu() for p in self.pipe.predict_windows(prepared, latents, t, windows, config)]

    def help_decode(self, key: str, latents, groups: list[list[int]]) -> list:
        """(index, (H, W, 3) uint8) of the frames in `groups` (decode_batch groups of job `key`)."""
        _, config = self._helping[key]
        wanted = {i for g in groups for i in g}
        return list(self.pipe.decode(latents, config, set(range(latents.shape[2])) - wanted))

    def help_release(self, key: str) -> None:
        self._helping.pop(key, None)


class RayHelpers:
    """The window-parallel transport over Ray: the lead (a worker running the job) sends each
    step's latents once to the object store and asks each helper for its share's predictions."""

    def __init__(self, helpers: list, key: str, spec):
        self.helpers = helpers
        self.key = key
        self.workers = 1 + len(helpers)
        self.alive = [True] * len(helpers)
        self.lost = 0
        # The helpers' reference passes run while the lead runs its own.
        self._prepared = [h.help_prepare.remote(key, spec) for h in helpers]

    def _lose(self, k: int, exc: BaseException) -> None:
        if self.alive[k]:
            self.alive[k] = False
            self.lost += 1
            log.warning("window helper %d of job %s failed (%s); the lead computes its windows", k + 1, self.key, exc)

    def wait_prepared(self) -> None:
        import ray

        for k, ref in enumerate(self._prepared):
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a helper that cannot prepare is simply not used
                self._lose(k, exc)

    def start(self, latents, t, shares):
        import ray

        ref = ray.put(latents)  # once per step, whatever the number of helpers
        return [h.help_predict.remote(self.key, ref, t, shares[k + 1]) if self.alive[k] and shares[k + 1] else None
                for k, h in enumerate(self.helpers)]

    def gather(self, handle):
        import ray

        out = []
        for k, ref in enumerate(handle):
            if ref is None:
                out.append([] if self.alive[k] else None)
                continue
            try:
                out.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a dead helper: the lead computes its windows
                self._lose(k, exc)
                out.append(None)
        return out

    def decode_start(self, latents, parts):
        import ray

        self.wait_prepared()  # a job resumed after its last step skips the lead's prepare: the helpers' may still run
        ref = ray.put(latents)
        return [h.help_decode.remote(self.key, ref, parts[k + 1]) if self.alive[k] and parts[k + 1] else None
                for k, h in enumerate(self.helpers)]

    def decode_gather(self, handle):
        return self.gather(handle)

    def release(self) -> None:
        for k, h in enumerate(self.helpers):
            if self.alive[k]:
                try:
                    h.help_release.remote(self.key)
                except Exception:  # noqa: BLE001 - best effort
                    pass
