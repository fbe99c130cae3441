"""The render queue: shots waiting, one running, the rest done, failed or cancelled.

No bpy here. The queue only orders the work and keeps each entry's state; what starting and
finishing a shot means (plan, skeleton maps, engine job, version folder, strip) is given by the
caller as two functions (render_shot.py's `start_entry` and `finish_entry`). Jobs run one after
another through one engine, kept warm between them; an engine that died during a job is started
again for the next one.

Driving it: `step()` once per timer tick in the UI (it never waits), `run_blocking()` on the
command line and in tests (Blender's -b mode runs no timers).

With a remote engine (the gateway of issue 8) an entry could be *submitted* and collected later:
the job id and the version folder are in the version's version.json (`job_id`, `engine`, `state`
"submitted"), which is what a reopened .blend needs to ask the gateway for the job again. See
docs/addon.md, "Queue".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .errors import AddonError, Cancelled, UserError
from .render_task import JobProgress, format_seconds

STATES = ("waiting", "running", "done", "error", "cancelled")


def _bug(exc: Exception) -> AddonError:
    return AddonError(f"{exc.__class__.__name__}: {exc}", "This is a bug in the add-on (please report it); the other shots go on.")


@dataclass
class QueueEntry:
    """One shot in the queue. `settings_from`: a version's recorded inputs ("Render Again with
    These Settings"), or None for the shot's current settings."""

    scene_name: str
    shot_name: str
    state: str = "waiting"
    message: str = ""
    hint: str = ""
    version: str = ""
    settings_from: dict | None = None
    task: object | None = None          # the RenderTask while running (and after)
    attempts: int = 0
    finished_at: float | None = None
    log: list[str] = field(default_factory=list)

    @property
    def progress(self) -> JobProgress | None:
        return getattr(self.task, "progress", None)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "error", "cancelled")

    def text(self) -> str:
        """The queue panel's line for this entry."""
        label = f"{self.shot_name}" + (f" {self.version}" if self.version else "")
        if self.state == "waiting":
            return f"{label}: waiting"
        if self.state == "running":
            p = self.progress
            return f"{label}: {p.text()}" if p is not None else f"{label}: starting"
        if self.state == "done":
            return f"{label}: done" + (f" ({self.message})" if self.message else "")
        if self.state == "cancelled":
            return f"{label}: cancelled"
        return f"{label}: failed: {self.message}"

    def factor(self) -> float:
        p = self.progress
        return p.factor() if p is not None else 0.0


class RenderQueue:
    def __init__(self):
        self.entries: list[QueueEntry] = []

    # -- what is in it --------------------------------------------------------------------------
    @property
    def running(self) -> QueueEntry | None:
        return next((e for e in self.entries if e.state == "running"), None)

    @property
    def active(self) -> bool:
        """Work left: an entry waiting or running."""
        return any(e.state in ("waiting", "running") for e in self.entries)

    def find(self, scene_name: str, shot_name: str) -> QueueEntry | None:
        """The latest entry of this shot."""
        for entry in reversed(self.entries):
            if entry.scene_name == scene_name and entry.shot_name == shot_name:
                return entry
        return None

    def eta_s(self) -> float | None:
        """Seconds left for the running entry (the engine's estimate), None when unknown."""
        running = self.running
        p = running.progress if running is not None else None
        return p.eta_s if p is not None else None

    def summary(self) -> str:
        counts = {s: sum(1 for e in self.entries if e.state == s) for s in STATES}
        parts = [f"{n} {s if s != 'error' else 'failed'}" for s, n in counts.items() if n]
        eta = self.eta_s()
        return ", ".join(parts) + (f"; running shot ETA {format_seconds(eta)}" if eta is not None else "")

    # -- commands -------------------------------------------------------------------------------
    def add(self, scene_name: str, shot_name: str, settings_from: dict | None = None) -> QueueEntry:
        """Queue a shot. A shot already waiting or running is not queued twice."""
        current = self.find(scene_name, shot_name)
        if current is not None and not current.finished:
            return current
        entry = QueueEntry(scene_name, shot_name, settings_from=settings_from)
        self.entries.append(entry)
        return entry

    def cancel(self, entry: QueueEntry) -> None:
        """A waiting entry is cancelled at once; a running one is asked to stop (the engine stops
        within one denoising step; frames on disk are kept)."""
        if entry.state == "waiting":
            entry.state, entry.message = "cancelled", "Cancelled before it started."
            entry.finished_at = time.time()
        elif entry.state == "running" and entry.task is not None:
            entry.task.cancel()

    def cancel_all(self) -> None:
        for entry in self.entries:
            if entry.state == "waiting":
                self.cancel(entry)
        running = self.running
        if running is not None:
            self.cancel(running)

    def retry(self, entry: QueueEntry) -> None:
        """Queue a failed or cancelled entry again (it resumes in its version folder: the frames
        already there are kept and the engine continues from its checkpoint)."""
        if entry.state in ("error", "cancelled"):
            entry.state, entry.message, entry.hint, entry.task = "waiting", "", "", None
            entry.finished_at = None

    def clear_finished(self) -> None:
        self.entries = [e for e in self.entries if not e.finished]

    # -- driving it -----------------------------------------------------------------------------
    def step(self, start, finish) -> QueueEntry | None:
        """One tick: handle the running job's events (no waiting) or start the next waiting entry.

        `start(entry)` plans the shot, writes its maps and returns a RenderTask (raises a
        UserError when the shot cannot render: the entry fails with that message and the queue
        moves on). `finish(entry)` runs once when the job has ended, however it ended (records
        it; after `done` imports the strip).
        Returns the entry worked on, or None when there is nothing to do."""
        entry = self.running
        if entry is None:
            entry = next((e for e in self.entries if e.state == "waiting"), None)
            if entry is None:
                return None
            entry.state, entry.attempts = "running", entry.attempts + 1
            try:
                entry.task = start(entry)
            except UserError as exc:
                self._end(entry, "error", exc)
            except Exception as exc:  # noqa: BLE001 - a bug in one shot must not stop the night's queue
                self._end(entry, "error", _bug(exc))
            return entry
        task = entry.task
        progress = task.pump()
        if progress.finished:
            self._settle(entry, finish)
        return entry

    def _settle(self, entry: QueueEntry, finish) -> None:
        try:
            finish(entry)  # records the outcome; after `done` imports the frames (and may find a problem)
        except UserError as exc:
            self._end(entry, "error", exc)
            return
        except Exception as exc:  # noqa: BLE001 - as above
            self._end(entry, "error", _bug(exc))
            return
        progress = entry.task.progress
        if progress.state == "done":
            entry.state, entry.message = "done", progress.message
            entry.finished_at = time.time()
            return
        if progress.state == "cancelled":
            self._end(entry, "cancelled", progress.error or Cancelled(progress.message))
        else:
            self._end(entry, "error", progress.error or AddonError(progress.message, progress.hint))
            entry.message, entry.hint = progress.message, progress.hint

    def _end(self, entry: QueueEntry, state: str, exc: UserError) -> None:
        entry.state, entry.message, entry.hint = state, exc.message, exc.hint
        entry.finished_at = time.time()

    def run_blocking(self, start, finish, on_progress=None, poll_s: float = 0.2) -> list[QueueEntry]:
        """Run every waiting entry (command line, tests). Returns the entries in queue order."""
        while self.active:
            entry = self.step(start, finish)
            if entry is not None and entry.state == "running" and entry.task is not None:
                entry.task.pump(timeout=poll_s)  # wait for the next event instead of spinning
            if on_progress is not None and entry is not None:
                on_progress(entry)
        return list(self.entries)
