"""State that lives as long as Blender runs, not in the .blend: the engine process (kept alive
between jobs so weights load once), the render task per scene, the render queue, and the status of the
"Check Engine" and "Set Up Engine Environment" buttons. No bpy here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from .engine_client import EngineProcess, EngineSettings, RemoteEngine, check_interpreter
from .errors import UserError
from .render_queue import RenderQueue
from .render_task import JobProgress, RenderTask

_engine: EngineProcess | None = None
tasks: dict[str, RenderTask] = {}  # scene name -> its latest render task (the Render button)
status: dict[str, JobProgress] = {}  # scene name -> what the panel shows (also failures before a task exists)
queue = RenderQueue()  # the shots queued with 'Render All Shots' / 'Render Selected Shots'


def engine_for(settings: EngineSettings, log_path: str | Path | None = None) -> EngineProcess:
    """The running engine for these settings, or a new one (the old one, if different, is stopped).

    Checks the interpreter first so that a wrong one gets a specific message, not a crash.
    A fresh engine has not said hello yet: the caller waits for it (RenderTask does).
    """
    global _engine
    if _engine is not None and _engine.alive and _engine.settings.key() == settings.key():
        return _engine
    shutdown_engine()
    if settings.address:
        _engine = RemoteEngine(settings).start()
        return _engine
    check_interpreter(settings.python)
    _engine = EngineProcess(settings, log_path).start()
    return _engine


def shutdown_engine() -> None:
    global _engine
    if _engine is not None:
        _engine.shutdown()
        _engine = None


def busy() -> bool:
    """A render runs or the queue has work left (one job at a time through the one engine)."""
    return any(not t.progress.finished for t in tasks.values()) or queue.active


@dataclass
class BackgroundStatus:
    """The state of a button that works on a thread (check engine, set up engine env)."""

    state: str = "idle"  # idle, running, ok, error
    lines: list[str] = field(default_factory=list)
    message: str = ""
    hint: str = ""
    factor: float = 0.0
    python: str | None = None  # the setup's result: the new env's interpreter
    thread: threading.Thread | None = None

    def run(self, work) -> None:
        """Run `work(status)` on a thread; it sets lines/factor; an AddonError becomes the message."""
        if self.state == "running":
            return
        self.state, self.lines, self.message, self.hint, self.factor = "running", [], "", "", 0.0

        def target():
            try:
                work(self)
                self.state = "ok"
            except UserError as exc:
                self.state, self.message, self.hint = "error", exc.message, exc.hint
            except Exception as exc:  # noqa: BLE001 - shown in the panel instead of lost on a thread
                self.state, self.message, self.hint = "error", f"{exc.__class__.__name__}: {exc}", "This is a bug in the add-on."

        self.thread = threading.Thread(target=target, name="aa-background", daemon=True)
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


check_status = BackgroundStatus()
setup_status = BackgroundStatus()


def check_engine(settings: EngineSettings, status: BackgroundStatus) -> None:
    """Start a throwaway engine, report its hello, stop it (the work behind 'Check Engine').
    The engine already serving renders with these settings is asked instead (no second copy of the weights)."""
    running = _engine
    if running is not None and running.alive and running.hello is not None and running.settings.key() == settings.key():
        _describe_hello(running.hello, status)
        status.lines.insert(0, "The engine serving renders answers:")
        return
    if settings.address:
        status.lines.append(f"Remote engine: {settings.address}")
        engine = RemoteEngine(settings).start()
    else:
        status.lines.append(f"Interpreter: {settings.python}")
        report = check_interpreter(settings.python)
        status.lines.append(f"Python {report['python']}, torch and aa_engine importable")
        status.factor = 0.3
        engine = EngineProcess(settings).start()
    try:
        hello = engine.wait_hello(timeout=600)
    finally:
        engine.shutdown()
    _describe_hello(hello, status)


def _describe_hello(hello: dict, status: BackgroundStatus) -> None:
    weights = hello.get("weights") or {}
    status.lines.append(f"Engine {hello.get('engine_version')} (protocol {hello.get('protocol')}), torch {hello.get('torch')}")
    status.lines.append(f"Device {hello.get('device')}, {hello.get('dtype')}")
    status.lines.append(f"Model {hello.get('model')}, weights {weights.get('kind')} {weights.get('path') or weights.get('source') or ''}".rstrip())
    status.message = "The engine works."
    status.factor = 1.0


def cancel_tasks() -> None:
    """Cancel running jobs and forget every shot's status (a new file is loading: the render
    operators die with the old file's windows). The engine stays up for the next render."""
    for task in list(tasks.values()):
        if not task.progress.finished:
            task.cancel()
    tasks.clear()
    status.clear()
    queue.cancel_all()
    queue.entries.clear()


def reset() -> None:
    """Stop everything (called from unregister)."""
    cancel_tasks()
    shutdown_engine()
