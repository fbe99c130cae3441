"""A real `python -m aa_engine serve` subprocess fed raw bytes (for the hardening and fuzz tests):
any byte string can be sent as a line, and every stdout line must be one JSON message."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def tiny_job(job_id: str, out: Path, frames: int = 4, **fields) -> dict:
    """A job for random-tiny: `frames` example pose maps at 24x24 (the smallest random-tiny takes), 1 step, no video."""
    poses = sorted(str(p) for p in (EXAMPLES / "poses").glob("*.png"))[:frames]
    return {"type": "job", "id": job_id, "reference": str(EXAMPLES / "reference.png"), "poses": poses,
            "output": str(out), "width": 24, "height": 24, "steps": 1, "video": False, **fields}


class RawEngine:
    def __init__(self, *args: str, env: dict | None = None, cwd: Path = ROOT, weights: str = "random-tiny"):
        command = [sys.executable, "-m", "aa_engine", "serve", *(("--weights", weights) if weights else ()), *args]
        self.proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[bytes] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def log(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")

    def send_bytes(self, line: bytes) -> None:
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def send(self, message) -> None:
        self.send_bytes(json.dumps(message).encode())

    def next(self, timeout: float = 60) -> dict:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise EOFError("engine closed stdout; stderr:\n" + self.log[-3000:])
        message = json.loads(line)  # every stdout line must be one JSON message
        assert isinstance(message, dict) and isinstance(message.get("type"), str), line
        return message

    def until(self, kind: str, timeout: float = 120) -> list[dict]:
        """Messages up to and including the first of type `kind`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            message = self.next(max(0.1, deadline - time.monotonic()))
            seen.append(message)
            if message["type"] == kind:
                return seen

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send({"type": "shutdown"})
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait()
