"""'Set Up Engine Environment': a venv in the add-on's user folder with torch and the engine.

The engine is this project's `aa_engine` package. A packaged add-on does not carry it (it needs
torch, which Blender's Python must not load), so the user points the preference 'Engine Source'
at a checkout of the project (a folder with pyproject.toml) or at an aa_engine wheel. No weights
are downloaded here. No bpy here: runs on a thread and reports through a BackgroundStatus.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from .engine_client import check_interpreter
from .errors import EngineSetupFailed


def venv_python(env_dir: str | Path) -> Path:
    env_dir = Path(env_dir)
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def engine_requirement(source: str) -> str:
    """The pip requirement for the engine: a project folder or a wheel, with the `engine` extra."""
    if not source:
        raise EngineSetupFailed(
            "No engine source is set.",
            "In the preferences, set 'Engine Source' to the Animate Anyone project folder (the one with pyproject.toml) or an aa_engine wheel.",
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise EngineSetupFailed(f"The engine source {path} does not exist.", "Point 'Engine Source' at the project folder or an aa_engine wheel.")
    if path.is_dir():
        if not (path / "pyproject.toml").is_file() or not (path / "aa_engine").is_dir():
            raise EngineSetupFailed(
                f"{path} is not the Animate Anyone project: it lacks pyproject.toml or the aa_engine package.",
                "Point 'Engine Source' at the folder that holds pyproject.toml and aa_engine/.",
            )
        return f"{path}[engine]"
    if path.suffix == ".whl":
        return f"{path}[engine]"
    raise EngineSetupFailed(f"{path} is neither a project folder nor a wheel (.whl).", "Point 'Engine Source' at the project folder or an aa_engine wheel.")


def folder_size(path: str | Path) -> int:
    """Bytes in the files under `path` (0 when it does not exist)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _size_text(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _run(argv: list[str], status, what: str, watch: str | Path | None = None, every: float = 5.0) -> None:
    """Run a command, its output lines into status.lines; while it is silent (pip downloading
    torch takes minutes), a stage line every `every` seconds with the time so far and the size
    of `watch` (the environment folder)."""
    status.lines.append(f"$ {' '.join(argv)}")
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise EngineSetupFailed(f"Could not run {argv[0]}: {exc}.", "Check that the base Python exists.") from exc
    lines: queue.Queue[str | None] = queue.Queue()

    def read():
        for raw in process.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=read, name="aa-setup-output", daemon=True).start()
    tail: list[str] = []
    started = last = time.monotonic()
    while True:
        try:
            line = lines.get(timeout=max(0.1, every - (time.monotonic() - last)))
        except queue.Empty:
            line = ""
        if line is None:
            break
        line = line.rstrip()
        now = time.monotonic()
        if line:
            tail = (tail + [line])[-20:]
            status.lines = status.lines[-30:] + [line]
            last = now
        elif now - last >= every:
            size = f", {_size_text(folder_size(watch))} in {watch}" if watch else ""
            status.lines = status.lines[-30:] + [f"{what}: {now - started:.0f} s so far{size}"]
            last = now
    if process.wait() != 0:
        errors = [t for t in tail if "error" in t.lower()] or tail or ["(no output)"]
        raise EngineSetupFailed(f"{what} failed: {errors[-1]}", "Read the lines above; fix the cause (network, disk space, engine source) and press the button again.")


def set_up_engine_env(env_dir: str | Path, source: str, status, base_python: str | None = None,
                      torch_spec: str = "torch", pip_args: tuple[str, ...] = ()) -> Path:
    """Create `env_dir` (a venv), install torch then the engine; returns the env's python.

    `status` is a runtime.BackgroundStatus (lines + factor are what the panel shows).
    """
    requirement = engine_requirement(source)  # fail before creating anything
    env_dir = Path(env_dir)
    python = venv_python(env_dir)
    if not python.is_file():
        status.factor = 0.05
        _run([base_python or sys.executable, "-m", "venv", str(env_dir)], status, "Creating the environment", env_dir)
    status.factor = 0.2
    status.lines.append("Installing torch: a download of about 200 MB (CPU build) to 2.5 GB (CUDA build); the environment ends near 2 GB (CPU).")
    _run([str(python), "-m", "pip", "install", "--progress-bar", "off", *pip_args, torch_spec], status, "Installing torch", env_dir)
    status.factor = 0.6
    _run([str(python), "-m", "pip", "install", "--progress-bar", "off", *pip_args, requirement], status, "Installing the engine", env_dir)
    status.factor = 0.9
    check_interpreter(str(python))
    status.factor = 1.0
    status.message = f"Engine environment ready: {python}"
    return python
