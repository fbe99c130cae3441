"""'Set Up Engine Environment': a venv in the add-on's user folder with torch and the engine.

The engine is this project's `aa_engine` package. A packaged add-on does not carry it (it needs
torch, which Blender's Python must not load), so the user points the preference 'Engine Source'
at a checkout of the project (a folder with pyproject.toml) or at an aa_engine wheel. No weights
are downloaded here. No bpy here: runs on a thread and reports through a BackgroundStatus.
"""

from __future__ import annotations

import os
import subprocess
import sys
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


def _run(argv: list[str], status, what: str) -> None:
    status.lines.append(f"$ {' '.join(argv)}")
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise EngineSetupFailed(f"Could not run {argv[0]}: {exc}.", "Check that the base Python exists.") from exc
    tail: list[str] = []
    for line in process.stdout:
        line = line.rstrip()
        if line:
            tail = (tail + [line])[-20:]
            status.lines = status.lines[-30:] + [line]
    if process.wait() != 0:
        errors = [l for l in tail if "error" in l.lower()] or tail or ["(no output)"]
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
        _run([base_python or sys.executable, "-m", "venv", str(env_dir)], status, "Creating the environment")
    status.factor = 0.2
    _run([str(python), "-m", "pip", "install", *pip_args, torch_spec], status, "Installing torch")
    status.factor = 0.6
    _run([str(python), "-m", "pip", "install", *pip_args, requirement], status, "Installing the engine")
    status.factor = 0.9
    check_interpreter(str(python))
    status.factor = 1.0
    status.message = f"Engine environment ready: {python}"
    return python
