"""A real `python -m aa_engine serve` subprocess, read line by line with timeouts."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class EngineProcess:
    def __init__(self, *args: str, python: str = sys.executable):
        self.proc = subprocess.Popen(
            [python, "-m", "aa_engine", "serve", *args],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream, put):
        for line in stream:
            put(line)
        put(None) if put.__name__ == "put" else None

    def send(self, message: dict | str) -> None:
        self.proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.proc.stdin.flush()

    def next(self, timeout: float = 60) -> dict:
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise EOFError("engine closed stdout; stderr:\n" + "".join(self.stderr[-20:]))
        return json.loads(line)  # every stdout line must be a JSON message

    def until(self, kind: str, timeout: float = 120) -> list[dict]:
        """Messages up to and including the first of type `kind`."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            message = self.next(max(0.1, deadline - time.monotonic()))
            seen.append(message)
            if message["type"] == kind:
                return seen

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send({"type": "shutdown"})
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()
