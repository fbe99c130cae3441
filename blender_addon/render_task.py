"""One render job's life on the client side: wait for the engine, send the job, follow its events.

No bpy here: `RenderTask.pump()` is called on Blender's main thread (by the modal operator's
timer, or in a blocking loop on the command line) and only updates `RenderTask.progress`, which the
panel draws. Importing the finished frames into the VSE is the caller's business.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .engine_client import EXIT_EVENT, EngineProcess
from .contract import settings as contract_settings
from .errors import AddonError, UserError, Cancelled, EngineCrashed, EngineJobFailed

FRAME_GLOB = "frame_*.png"
_OUT_OF_MEMORY = re.compile(r"out of memory|can't allocate memory|not enough memory|OutOfMemoryError", re.IGNORECASE)
# Share of the progress bar per engine stage (denoising dominates).
_STAGE_SPAN = {"starting": (0.0, 0.02), "prepare": (0.02, 0.04), "reference": (0.04, 0.06), "denoise": (0.06, 0.92), "decode": (0.92, 1.0)}


@dataclass
class JobProgress:
    """What the panel shows. `state`: idle, starting, running, cancelling, done, error, cancelled."""

    state: str = "idle"
    stage: str = ""
    step: int = 0
    total: int = 0
    frames_done: int = 0
    frames_total: int = 0
    resumed_frames: int = 0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""
    hint: str = ""
    output: str = ""
    video: str | None = None
    frames: list[str] = field(default_factory=list)
    error: AddonError | None = None
    settings: dict = field(default_factory=dict)   # what the engine runs the job with (`accepted`)
    warnings: list[str] = field(default_factory=list)  # the engine's and the add-on's notes on the job
    latest_frame: str = ""  # the last frame written (the panel's live preview)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def factor(self) -> float:
        if self.state == "done":
            return 1.0
        lo, hi = _STAGE_SPAN.get(self.stage or "starting", (0.0, 1.0))
        within = self.step / self.total if self.total else 0.0
        return max(0.0, min(1.0, lo + (hi - lo) * within))

    def text(self) -> str:
        if self.state == "starting":
            return "Starting the engine (loading weights)..."
        if self.state in ("running", "cancelling"):
            parts = [self.stage.capitalize() or "Working"]
            if self.total:
                parts.append(f"step {self.step}/{self.total}")
            parts.append(f"frames {self.frames_done}/{self.frames_total}")
            if self.eta_s is not None:
                parts.append(f"ETA {format_seconds(self.eta_s)}")
            text = ", ".join(parts)
            return "Cancelling... " + text if self.state == "cancelling" else text
        return self.message


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def frames_on_disk(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(folder.glob(FRAME_GLOB)) if folder.is_dir() else []


def _pose_frames(job: dict) -> int:
    """The job's frame count as far as the message tells it (a track given by path: 0 until the
    engine's `accepted` says)."""
    poses, track = job.get("poses"), job.get("keypoints")
    return len(poses) if isinstance(poses, list) else len(track.get("frames") or []) if isinstance(track, dict) else 0


class RenderTask:
    """Drive one `job` message through an engine (started or already serving)."""

    def __init__(self, engine: EngineProcess, job: dict, plan=None, version_dir: Path | None = None, item_name: str | None = None):
        self.engine = engine
        self.job = job
        self.job_id = job["id"]
        self.output = Path(job["output"])
        # What the add-on renders (render_shot.py): the shot's plan, its version folder, its shot-list entry.
        self.plan = plan
        self.version_dir = version_dir
        self.item_name = item_name
        self.live_frames = 0          # frames already shown in the strip while rendering
        self.strip_name: str | None = None
        self.imported = False         # the finished frames are in the VSE
        self.progress = JobProgress(state="starting", output=str(self.output), frames_total=_pose_frames(job))
        self._started = time.monotonic()
        self._sent = False
        self._resend_at: float | None = None  # after a `busy` answer (the previous job still winding down)
        self._busy_retries = 0
        if engine.hello is not None:
            self._send_job()

    # -- commands ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the engine to stop (honoured within one denoising step); frames on disk stay."""
        if self.progress.finished:
            return
        if not self._sent:  # the engine is still loading: never send the job (the engine stays for the next one)
            self._finish_cancelled(0)
            return
        self.progress.state = "cancelling"
        try:
            self.engine.send({"type": "cancel", "id": self.job_id})
        except UserError as exc:
            self._fail(exc)

    def pump(self, timeout: float | None = None) -> JobProgress:
        """Handle the engine's events. With a timeout, wait up to that long for the first one."""
        if self.progress.finished:
            return self.progress
        events = []
        if timeout is not None:
            first = self.engine.next_event(timeout)
            if first is not None:
                events.append(first)
        events += self.engine.poll()
        if self._resend_at is not None and time.monotonic() >= self._resend_at:
            self._resend_at = None
            try:
                self.engine.send(self.job)
            except UserError as exc:
                self._fail(exc)
        for event in events:
            try:
                self.handle(event)
            except UserError as exc:
                self._fail(exc)
            if self.progress.finished:
                break
        self.progress.elapsed_s = time.monotonic() - self._started
        return self.progress

    def run_blocking(self, on_progress=None, poll_s: float = 0.5) -> JobProgress:
        """Pump until the job ends (command-line renders and tests; Blender's -b mode runs no timers)."""
        while not self.progress.finished:
            self.pump(timeout=poll_s)
            if on_progress is not None:
                on_progress(self.progress)
        return self.progress

    # -- events -----------------------------------------------------------------------------------
    def handle(self, event: dict) -> None:
        kind = event.get("type")
        p = self.progress
        if not self._sent:
            hello = self.engine.handle_startup_event(event)  # raises EngineStartFailed on error/exit
            if hello is not None:
                self._send_job()
            return
        if kind == EXIT_EVENT:
            self._engine_died(event)
            return
        if event.get("id") not in (self.job_id, None):
            return  # another job's late event
        if kind == "accepted":
            p.state = "running" if p.state != "cancelling" else p.state
            p.frames_total = event.get("frames", p.frames_total)
            p.resumed_frames = event.get("resumed_frames", 0)
            p.frames_done = p.resumed_frames
            p.settings = dict(event.get("settings") or {})
            p.warnings.extend(str(w) for w in event.get("warnings") or [])
        elif kind == "progress":
            p.stage = event.get("stage", p.stage)
            p.step = event.get("step", 0)
            p.total = event.get("total", 0)
            p.frames_done = max(p.frames_done, event.get("frames_done", 0))
            p.frames_total = event.get("frames_total", p.frames_total)
            p.eta_s = event.get("eta_s")
        elif kind == "frame":
            p.frames_done = max(p.frames_done, event.get("index", 0))
            p.latest_frame = str(event.get("path") or p.latest_frame)
        elif kind == "done":
            p.state = "done"
            p.frames = [str(f) for f in frames_on_disk(self.output)]
            p.frames_done = len(p.frames)
            p.video = event.get("video")
            p.message = f"Done: {len(p.frames)} frames in {self.output}" + (f" ({event['elapsed_s']:.0f} s)" if event.get("elapsed_s") is not None else "")
        elif kind == "cancelled":
            self._finish_cancelled(len(frames_on_disk(self.output)))
        elif kind == "error":
            if event.get("id") is None and event.get("code") == "bad_request":
                return  # an answer to a stray line (e.g. a late cancel), not to our job
            if event.get("code") == "busy" and self._busy_retries < 50:
                # The engine sends done/cancelled just before its worker thread ends: try again shortly.
                self._busy_retries += 1
                self._resend_at = time.monotonic() + 0.1
                return
            kept = self._kept_note()
            message, code = event.get("message", "(no message)"), event.get("code", "")
            if code == "out_of_memory" or _OUT_OF_MEMORY.search(message):
                # Also catches an allocator failure the engine could only report as `internal`.
                raise EngineJobFailed(
                    f"The engine ran out of memory during the job.{kept} (Engine: {message})",
                    "Lower the resolution, the context window or the frame count, or use fp16 on a GPU; then render again to resume.",
                    engine_code="out_of_memory",
                )
            raise EngineJobFailed(f"The engine failed: {message}{kept}", event.get("hint", ""), engine_code=code)

    # -- internals --------------------------------------------------------------------------------
    def _send_job(self) -> None:
        self._fit_to_engine(self.engine.hello or {})
        self.engine.send(self.job)

    def _fit_to_engine(self, hello: dict) -> None:
        """A context window longer than the model's motion modules take is shortened to theirs
        (the engine says which in `hello`), with a note, rather than refused."""
        longest = hello.get("max_context_frames")
        frames = self.job.get("context_frames", contract_settings.BY_NAME["context_frames"].default)
        if isinstance(longest, int) and frames > longest:
            self.job["context_frames"] = longest
            self.job["context_overlap"] = min(self.job.get("context_overlap", 4), longest - 1)
            self.progress.warnings.append(f"Context Frames {frames} shortened to {longest}, the longest window this model takes.")
        self._sent = True
        if self.progress.state == "starting":
            self.progress.state = "running"
            self.progress.stage = "prepare"

    def _kept_note(self) -> str:
        kept = len(frames_on_disk(self.output))
        return f" {kept} frame(s) already written are kept in {self.output}." if kept else ""

    def _engine_died(self, event: dict) -> None:
        code = event.get("returncode")
        if code is None:
            why = "the connection to the remote engine closed"
        else:
            why = "killed (often: the system ran out of memory)" if code in (-9, 137) else f"exit code {code}"
        last = ""
        for line in reversed(event.get("log_tail") or []):
            if line.strip():
                last = f" Its last log line: {line.strip()}"
                break
        raise EngineCrashed(
            f"The engine stopped in the middle of the job ({why}).{self._kept_note()}{last}",
            "Render again to resume from the frames and checkpoint on disk; if it keeps failing, lower the "
            "resolution or context window. " + self.engine.log_hint(),
        )

    def _finish_cancelled(self, kept: int) -> None:
        p = self.progress
        p.state = "cancelled"
        p.message = f"Cancelled. {kept} frame(s) on disk are kept; render again to resume."
        p.error = Cancelled(p.message)

    def _fail(self, exc: AddonError) -> None:
        p = self.progress
        p.state = "error"
        p.error = exc
        p.message = exc.message
        p.hint = exc.hint


__all__ = ["JobProgress", "RenderTask", "frames_on_disk", "format_seconds"]
