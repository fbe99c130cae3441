"""Protocol message handling, independent of the transport.

An `EngineSession` is given a `send(message: dict)` callable; the transport feeds it incoming lines
with `handle_line`. Jobs run on a worker thread so that `cancel` (and `ping`) are handled while a
job runs; the weights stay loaded for the life of the session.
"""

from __future__ import annotations

import logging
import threading
import traceback
from typing import Callable

import torch

from aa_contract import protocol
from aa_engine import PROTOCOL_VERSION, __version__
from aa_engine.errors import BadRequest, Cancelled, EngineError, UserError
from aa_engine.jobs import JobSpec, run_job
from aa_engine.pipeline import AnimateAnyonePipeline
from aa_engine.weights import WeightsInfo

log = logging.getLogger(__name__)


class EngineSession:
    def __init__(self, pipe: AnimateAnyonePipeline, weights: WeightsInfo, send: Callable[[dict], None]):
        self.pipe = pipe
        self.weights = weights
        self._send = send
        self._send_lock = threading.Lock()
        self._job_id: str | None = None
        self._cancel = threading.Event()
        self._worker: threading.Thread | None = None

    # -- outgoing ---------------------------------------------------------------------------------
    def send(self, type: str, **fields) -> None:  # noqa: A002 - the protocol's field name
        with self._send_lock:
            self._send({"type": type, **fields})

    def send_error(self, job_id: str | None, error: EngineError) -> None:
        self.send("error", id=job_id, **error.to_dict())

    def hello(self) -> None:
        self.send(
            "hello",
            protocol=PROTOCOL_VERSION,
            engine_version=__version__,
            device=str(self.pipe.device),
            dtype=str(self.pipe.dtype).replace("torch.", ""),
            weights=self.weights.to_dict(),
            model=self.pipe.model.config.name,
            torch=torch.__version__,
            native_size=list(self.pipe.model.config.native_size or (512, 768)),
            max_context_frames=self.pipe.model.config.motion_module.max_frames,
        )

    # -- incoming ---------------------------------------------------------------------------------
    def handle_line(self, line: str) -> bool:
        """Handle one line; returns False when the session should end (after `shutdown`)."""
        if not line.strip():
            return True
        try:
            message = protocol.decode_line(line)
        except UserError as exc:
            self.send_error(None, exc)
            return True
        return self.handle(message)

    def handle(self, message: dict) -> bool:
        kind = message["type"]
        if kind == "job":
            self._start_job(message)
        elif kind == "cancel":
            job_id = message.get("id")
            if self._job_id is not None and (job_id is None or job_id == self._job_id):
                self._cancel.set()
            else:
                self.send_error(job_id, BadRequest(f"No running job {job_id!r} to cancel.", "", code="bad_request"))
        elif kind == "ping":
            self.send("pong")
        elif kind == "shutdown":
            self.close(cancel=False)
            self.send("bye")
            return False
        else:
            self.send_error(message.get("id"), BadRequest(f"Unknown message type {kind!r}.", "Known: job, cancel, ping, shutdown."))
        return True

    def close(self, cancel: bool = True) -> None:
        """Wait for the running job, if any; with cancel, stop it first (within one step)."""
        if self._worker is not None:
            if cancel:
                self._cancel.set()
            self._worker.join()

    # -- jobs -------------------------------------------------------------------------------------
    def _start_job(self, message: dict) -> None:
        job_id = message.get("id") if isinstance(message.get("id"), str) else None
        if self._worker is not None and self._worker.is_alive():
            if self._job_id is not None:
                self.send_error(job_id, EngineError(f"Job {self._job_id!r} is still running.", "Wait for its done/error event, or cancel it.", code="busy"))
                return
            self._worker.join()  # it has sent its last event and is only ending
        try:
            spec = JobSpec.from_message(message)
        except UserError as exc:
            self.send_error(job_id, exc)
            return
        self._job_id = spec.id
        self._cancel.clear()
        self._worker = threading.Thread(target=self._run, args=(spec,), name=f"job-{spec.id}", daemon=True)
        self._worker.start()

    def _run(self, spec: JobSpec) -> None:
        frames_done = [0]

        def emit(event: str, **fields) -> None:
            if event == "frame":
                frames_done[0] += 1
            self.send(event, id=spec.id, **fields)

        try:
            result = run_job(self.pipe, self.weights.identity, spec, emit, self._cancel.is_set)
            last = {"type": "done", "id": spec.id, **result}
        except Cancelled:
            last = {"type": "cancelled", "id": spec.id, "frames_done": frames_done[0]}
        except UserError as exc:
            last = {"type": "error", "id": spec.id, **exc.to_dict()}
        except Exception as exc:  # noqa: BLE001 - the engine must survive a failed job
            log.error("job %s failed:\n%s", spec.id, traceback.format_exc())
            error = EngineError(f"Internal error: {exc.__class__.__name__}: {exc}", "This is a bug; the engine log (stderr) has the traceback.", code="internal")
            last = {"type": "error", "id": spec.id, **error.to_dict()}
        # Free the slot before the last event, so a job sent in reply to it is never refused as busy.
        self._job_id = None
        self.send(**last)
