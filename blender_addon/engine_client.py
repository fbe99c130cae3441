"""The engine as a subprocess speaking the JSON-lines protocol (docs/protocol.md). No bpy here.

`EngineProcess` starts `python -m aa_engine serve`, writes messages to its stdin and has a reader
thread turn its stdout lines into events on a queue; another thread keeps the tail of its stderr
(the engine's log) for error messages. Nothing here touches bpy: the add-on drains the queue on
Blender's main thread (a modal operator's timer in the UI, a blocking loop on the command line).

When the process ends, a final event `{"type": "engine_exit", "returncode": N, "log_tail": [...]}`
is queued, so a client waiting for events always learns about a crash.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .contract import protocol
from .errors import EngineInterpreterError, EngineStartFailed

PROTOCOL_VERSION = protocol.PROTOCOL_VERSION
EXIT_EVENT = "engine_exit"
# Prints which of the engine's imports fail, as one JSON line (run with the engine's interpreter).
_PROBE = (
    "import json, importlib, sys\n"
    "missing = {}\n"
    "for name in ('torch', 'aa_engine'):\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception as exc:\n"
    "        missing[name] = f'{exc.__class__.__name__}: {exc}'\n"
    "print(json.dumps({'python': sys.version.split()[0], 'missing': missing}))\n"
)


@dataclass
class EngineSettings:
    """How to start the engine (the add-on preferences, or command-line arguments)."""

    python: str = ""
    weights: str = ""  # a weights folder, "random-tiny", or "" for the engine's default model
    device: str = "auto"  # auto, cpu, cuda, mps
    dtype: str = "auto"  # auto, fp32, fp16, bf16
    address: str = ""  # HOST:PORT of a remote engine (`aa_engine serve --listen`); empty = start one here

    def argv(self) -> list[str]:
        argv = [self.python, "-u", "-m", "aa_engine", "serve", "--device", self.device, "--dtype", self.dtype]
        if self.weights:
            argv += ["--weights", self.weights]
        return argv

    def key(self) -> tuple:
        return (self.python, self.weights, self.device, self.dtype, self.address)


def check_interpreter(python: str, timeout: float = 120.0) -> dict:
    """Raise EngineInterpreterError unless `python` runs and imports torch and aa_engine.

    Returns the probe's report ({"python": version, "missing": {}}).
    """
    if not python:
        raise EngineInterpreterError(
            "No engine interpreter is set.",
            "In the add-on preferences, set 'Engine Python' to the python of the engine environment, "
            "or press 'Set Up Engine Environment'.",
        )
    path = Path(python)
    if not path.is_file():
        raise EngineInterpreterError(
            f"The engine interpreter {python} does not exist.",
            "Point 'Engine Python' at the engine environment's python (e.g. .venv/engine/bin/python), "
            "or press 'Set Up Engine Environment'.",
        )
    if not os.access(path, os.X_OK):
        raise EngineInterpreterError(f"The engine interpreter {python} is not executable.", "Check the file's permissions.")
    try:
        done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineInterpreterError(f"The engine interpreter {python} could not be run: {exc}.", "Is it a Python 3.10+ interpreter?") from exc
    report = None
    for line in reversed(done.stdout.splitlines()):
        try:
            report = json.loads(line)
            break
        except ValueError:
            continue
    if done.returncode != 0 or report is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EngineInterpreterError(f"The engine interpreter {python} failed to start: {tail}", "Is it a working Python 3.10+ interpreter?")
    missing = report["missing"]
    if "torch" in missing:
        raise EngineInterpreterError(
            f"The engine interpreter {python} lacks torch ({missing['torch']}).",
            "That is not the engine environment: pick the engine env's python, or press 'Set Up Engine Environment'.",
        )
    if "aa_engine" in missing:
        raise EngineInterpreterError(
            f"The engine interpreter {python} has torch but not the engine package aa_engine ({missing['aa_engine']}).",
            "Install the engine into it: `python -m pip install -e PATH_TO_PROJECT[engine]`, or press 'Set Up Engine Environment'.",
        )
    return report


class EngineProcess:
    """One running engine. Methods are safe to call from Blender's main thread; the queue is
    filled by the reader thread only."""

    def __init__(self, settings: EngineSettings, log_path: str | Path | None = None):
        self.settings = settings
        self.events: queue.Queue[dict] = queue.Queue()
        self.log_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.hello: dict | None = None
        self.log_path = Path(log_path) if log_path else None
        self._process: subprocess.Popen | None = None
        self._write_lock = threading.Lock()

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> "EngineProcess":
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the engine has its own
        env.pop("PYTHONPATH", None)
        try:
            self._process = subprocess.Popen(
                self.settings.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, text=True, encoding="utf-8", bufsize=1,
            )
        except OSError as exc:
            raise EngineStartFailed(f"Could not start the engine ({self.settings.python}): {exc}.", "Check 'Engine Python' in the preferences.") from exc
        threading.Thread(target=self._read_stdout, name="aa-engine-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="aa-engine-stderr", daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send(self, message: dict) -> None:
        if not self.alive:
            raise EngineStartFailed("The engine is not running.", "Press 'Check Engine' to start it and see what it reports.")
        with self._write_lock:
            try:
                self._process.stdin.write(json.dumps(message) + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise EngineStartFailed(f"The engine stopped accepting messages ({exc}).", self.log_hint()) from exc

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask the engine to exit (cancelling any job first); kill it if it does not."""
        if self._process is None:
            return
        if self.alive:
            try:
                with self._write_lock:
                    self._process.stdin.close()  # stdin closing = cancel the running job and exit
            except OSError:
                pass
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)

    def kill(self) -> None:
        if self.alive:
            self._process.kill()
            self._process.wait(5)

    # -- events -----------------------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """Every event queued so far, without waiting."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def next_event(self, timeout: float | None = None) -> dict | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_hello(self, timeout: float = 600.0) -> dict:
        """Block until the engine says hello (weights loaded); raise EngineStartFailed otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(timeout=max(0.0, deadline - time.monotonic()))
            if event is None:
                self.kill()
                raise EngineStartFailed(f"The engine did not answer within {timeout:.0f} s.", self.log_hint())
            result = self.handle_startup_event(event)
            if result is not None:
                return result

    def handle_startup_event(self, event: dict) -> dict | None:
        """Interpret an event seen before `hello`: returns hello, raises on failure, None otherwise."""
        kind = event.get("type")
        if kind == "hello":
            if event.get("protocol") != PROTOCOL_VERSION:
                self.shutdown()
                raise EngineStartFailed(
                    f"The engine speaks protocol {event.get('protocol')}, this add-on speaks {PROTOCOL_VERSION}.",
                    "Install matching versions of the add-on and the engine.",
                )
            self.hello = event
            return event
        if kind == "error":
            # e.g. the weights folder is incomplete: the engine says what is missing, then exits.
            self.shutdown(5)
            raise EngineStartFailed(event.get("message", "The engine failed to start."), event.get("hint", ""))
        if kind == EXIT_EVENT:
            raise EngineStartFailed(f"The engine exited while starting (exit code {event.get('returncode')}). {self.last_log_line()}".strip(), self.log_hint())
        return None

    # -- the engine's log -------------------------------------------------------------------------
    def last_log_line(self) -> str:
        for line in reversed(self.log_tail):
            if line.strip():
                return f"Its last log line: {line.strip()}"
        return ""

    def log_hint(self) -> str:
        where = f"the full log is in {self.log_path}" if self.log_path else "run it by hand to see its log"
        return f"Press 'Check Engine' for details; {where}."

    # -- threads ----------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        process = self._process
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                self.log_tail.append(f"(stdout) {line}")
                continue
            if isinstance(event, dict):
                self.events.put(event)
        returncode = process.wait()
        time.sleep(0.05)  # let the stderr thread take the last log lines
        self.events.put({"type": EXIT_EVENT, "returncode": returncode, "log_tail": list(self.log_tail)})

    def _read_stderr(self) -> None:
        log = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "a", encoding="utf-8")
            except OSError:
                log = None
        try:
            for line in self._process.stderr:
                self.log_tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        finally:
            if log is not None:
                log.close()


class RemoteEngine(EngineProcess):
    """The same protocol over TCP, to an engine started elsewhere with
    `python -m aa_engine serve --listen HOST:PORT`. Paths in jobs are paths on the engine's
    machine: use shared storage. Closing the connection cancels a running job there; the remote
    engine keeps its weights loaded and waits for the next connection."""

    def __init__(self, settings: EngineSettings):
        super().__init__(settings)
        self.address = settings.address
        self._sock: socket.socket | None = None
        self._writer = None
        self._closed = False

    def start(self) -> "RemoteEngine":
        host, _, port = self.address.rpartition(":")
        if not port.isdigit():
            raise EngineStartFailed(f"The remote engine address {self.address!r} is not HOST:PORT.", "Example: 192.168.1.20:7860; leave it empty to run the engine on this computer.")
        try:
            self._sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
        except OSError as exc:
            raise EngineStartFailed(
                f"Cannot reach the remote engine at {self.address} ({exc}).",
                "Start it there with `python -m aa_engine serve --listen 0.0.0.0:PORT`, and check the address and firewall.",
            ) from exc
        self._sock.settimeout(None)
        self._writer = self._sock.makefile("w", encoding="utf-8")
        threading.Thread(target=self._read_socket, name="aa-engine-tcp", daemon=True).start()
        return self

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self._sock is not None and not self._closed

    def send(self, message: dict) -> None:
        if not self.alive:
            raise EngineStartFailed(f"The connection to the remote engine at {self.address} is closed.", "Render again to reconnect.")
        with self._write_lock:
            try:
                self._writer.write(json.dumps(message) + "\n")
                self._writer.flush()
            except OSError as exc:
                raise EngineStartFailed(f"The remote engine at {self.address} stopped answering ({exc}).", self.log_hint()) from exc

    def shutdown(self, timeout: float = 10.0) -> None:
        if self._sock is not None and not self._closed:
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def kill(self) -> None:
        self.shutdown()

    def log_hint(self) -> str:
        return f"The engine's log is on the machine at {self.address}."

    def _read_socket(self) -> None:
        try:
            with self._sock.makefile("r", encoding="utf-8") as reader:
                for line in reader:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        self.events.put(event)
        except OSError:
            pass
        self._closed = True
        self.events.put({"type": EXIT_EVENT, "returncode": None, "log_tail": []})
