"""Protocol message handling, independent of the transport.

An `EngineSession` is given a `send(message: dict)` callable; the transport feeds it incoming lines
(bytes or str) with `handle_line`. Jobs run on a worker thread so that `cancel` (and `ping`) are
handled while a job runs; the weights stay loaded for the life of the session.

The session never dies of its input: every line gets an answer, and anything a handler raises
becomes an `error` event (a UserError with its own code, anything else `internal`), after which
the session keeps serving. Blank lines (only spaces, tabs, CR, LF) are ignored.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import torch

from aa_contract import protocol
from aa_engine import PROTOCOL_VERSION, __version__
from aa_engine.errors import BadRequest, Cancelled, EngineError, UserError, internal_error
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
        self.disconnected = False  # set when sending fails: the client is gone

    # -- outgoing ---------------------------------------------------------------------------------
    def send(self, type: str, **fields) -> None:  # noqa: A002 - the protocol's field name
        with self._send_lock:
            if self.disconnected:
                return
            try:
                self._send({"type": type, **fields})
            except (OSError, ValueError) as exc:  # a closed pipe or socket: the client went away
                self.disconnected = True
                self._cancel.set()  # nobody will read the frames' events; the checkpoint stays
                log.warning("cannot send to the client (%s); cancelling any running job", exc)

    def send_error(self, job_id, error: UserError) -> None:
        self.send("error", id=job_id if isinstance(job_id, str) else None, **error.to_dict())

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
    def handle_line(self, line: bytes | str) -> bool:
        """Handle one line (bytes are decoded as UTF-8, whatever the locale); returns False when
        the session should end (after `shutdown`). Never raises for any input."""
        if not line.strip(b" \t\r\n" if isinstance(line, bytes) else " \t\r\n"):
            return True
        try:
            message = protocol.decode_line(line)
        except UserError as exc:
            self.send_error(None, exc)
            return True
        except Exception as exc:  # noqa: BLE001 - a bug in decoding must not end the session
            self.send_error(None, internal_error(exc, log, "decoding a line"))
            return True
        return self.handle(message)

    def handle(self, message: dict) -> bool:
        """Handle one decoded message; returns False after `shutdown`. Anything the handler
        raises becomes an `error` event (with the message's id when it has a string one)."""
        try:
            return self._dispatch(message)
        except UserError as exc:
            self.send_error(message.get("id") if isinstance(message, dict) else None, exc)
        except RecursionError:  # a value nested too deeply to print or walk
            self.send_error(message.get("id") if isinstance(message, dict) else None,
                            BadRequest("A field of the message is nested too deeply.", "Send plain values: strings, numbers, flat lists."))
        except Exception as exc:  # noqa: BLE001 - the engine must survive any message
            job_id = message.get("id") if isinstance(message, dict) else None
            self.send_error(job_id, internal_error(exc, log, f"handling a {type(message).__name__} message"))
        return True

    def _dispatch(self, message: dict) -> bool:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise BadRequest("A message must be a JSON object with a string 'type'.", 'Example: {"type": "ping"}')
        kind = message["type"]
        if kind == "job":
            self._start_job(message)
        elif kind == "cancel":
            job_id = message.get("id")
            if self._job_id is not None and (job_id is None or job_id == self._job_id):
                self._cancel.set()
            else:
                shown = job_id if isinstance(job_id, str) else None
                self.send_error(job_id, BadRequest(f"No running job {shown!r} to cancel." if shown else "No running job to cancel.",
                                                   "A cancel's 'id' names a running job; check for its done/cancelled event."))
        elif kind == "ping":
            self.send("pong")
        elif kind == "shutdown":
            self.close(cancel=False)
            self.send("bye")
            return False
        else:
            shown = kind if len(kind) <= 60 else kind[:60] + "..."
            self.send_error(message.get("id"), BadRequest(f"Unknown message type {shown!r}.", "Known: job, cancel, ping, shutdown."))
        return True

    def close(self, cancel: bool = True) -> None:
        """Wait for the running job, if any; with cancel, stop it first (within one step: it
        sends its `cancelled` event and keeps its checkpoint, so resending the job resumes)."""
        if self._worker is not None:
            if cancel:
                self._cancel.set()
            self._worker.join()

    def cancel_running(self) -> None:
        """Ask the running job, if any, to stop after its current step (safe from a signal
        handler: it only sets an event)."""
        self._cancel.set()

    # -- jobs -------------------------------------------------------------------------------------
    def _start_job(self, message: dict) -> None:
        job_id = message.get("id") if isinstance(message.get("id"), str) else None
        if self._worker is not None and self._worker.is_alive():
            if self._job_id is not None:
                self.send_error(job_id, EngineError(f"Job {self._job_id!r} is still running.", "Wait for its done/error event, or cancel it.", code="busy"))
                return
            self._worker.join()  # it has sent its last event and is only ending
        spec = JobSpec.from_message(message)  # a UserError becomes the job's error event (handle)
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
            last = {"type": "error", "id": spec.id, **internal_error(exc, log, f"running job {spec.id!r}").to_dict()}
        # Free the slot before the last event, so a job sent in reply to it is never refused as busy.
        self._job_id = None
        self.send(**last)
