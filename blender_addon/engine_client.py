"""The engine as a subprocess speaking the JSON-lines protocol (docs/protocol.md). No bpy here.

`EngineProcess` starts `python -m aa_engine serve`, writes messages to its stdin and has a reader
thread turn its stdout lines into events on a queue; another thread keeps the tail of its stderr
(the engine's log) for error messages. Nothing here touches bpy: the add-on drains the queue on
Blender's main thread (a modal operator's timer in the UI, a blocking loop on the command line).

When the process ends, a final event `{"type": "engine_exit", "returncode": N, "log_tail": [...]}`
is queued, so a client waiting for events always learns about a crash.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import os
import queue
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .contract import errors, protocol
from .errors import EngineInterpreterError, EngineJobFailed, EngineStartFailed

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
    token: str = ""  # the remote engine's token (its token file's content)
    tls_ca: str = ""  # remote over TLS, trusting this CA / certificate file (PEM)
    tls_fingerprint: str = ""  # remote over TLS, trusting the one certificate with this SHA-256 (hex, colons allowed)
    tls: bool = False  # remote over TLS, trusting the system's CAs (when neither of the above is set)
    client_id: str = ""  # this client's stable random id (jobs belong to it); empty: a new one per connection

    def argv(self) -> list[str]:
        argv = [self.python, "-u", "-m", "aa_engine", "serve", "--device", self.device, "--dtype", self.dtype]
        if self.weights:
            argv += ["--weights", self.weights]
        return argv

    def key(self) -> tuple:
        return (self.python, self.weights, self.device, self.dtype, self.address, self.token, self.tls_ca, self.tls_fingerprint,
                self.tls, self.client_id)


def protocol_mismatch(theirs) -> str:
    """The message for an engine that speaks another protocol version: which side is older."""
    if isinstance(theirs, int) and theirs < PROTOCOL_VERSION:
        return f"The engine speaks protocol {theirs}, older than this add-on's {PROTOCOL_VERSION}: update the engine."
    if isinstance(theirs, int):
        return f"The engine speaks protocol {theirs}, newer than this add-on's {PROTOCOL_VERSION}: update the add-on."
    return f"The engine did not say its protocol version (this add-on speaks {PROTOCOL_VERSION}): it is not an Animate Anyone engine, or a very old one."


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


def json_lines(lines, on_other=None):
    """The protocol messages among `lines` (str or bytes, from a pipe or a socket), decoded by the
    contract (UTF-8, one JSON object with a "type" per line); any other non-empty line goes to
    on_other(text) (an engine's stray output, kept for its log tail)."""
    for line in lines:
        if not line.strip():
            continue
        try:
            yield protocol.decode_line(line)
        except errors.ContractError:
            if on_other is not None:
                on_other((line.decode("utf-8", "replace") if isinstance(line, bytes) else line).strip())


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
                raise EngineStartFailed(protocol_mismatch(event.get("protocol")), "Install the add-on and engine of the same release.")
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
        for event in json_lines(process.stdout, on_other=lambda text: self.log_tail.append(f"(stdout) {text}")):
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
    """An engine on another machine (`python -m aa_engine serve --listen HOST:PORT`), protocol 3
    over TCP (optionally TLS). Nothing is shared but the socket:

    - `send(job)` reads the files the job names here (the reference image, the keypoint track or
      the skeleton maps), uploads their bytes, and says which frames the local output folder already
      holds (`have`, by SHA-256), so those are not sent again;
    - the engine streams each finished frame back; the reader thread writes it atomically into the
      job's LOCAL output folder and queues the ordinary `frame` event with the local path, so the
      render task, progress bar, cancel and VSE import work exactly as with a local engine;
    - if the connection drops mid-job, it reconnects (for up to `reconnect_s`) and sends the job
      again: the engine re-attaches it if it kept running (it does: jobs survive their client), or
      resumes it from its checkpoint if the engine was restarted.

    The job's name on the engine is stable per local output folder (`remote_id`), so rendering the
    same shot again, from this or a restarted Blender, finds the engine's frames and checkpoint.
    """

    GREETING_TIMEOUT = 60.0  # the engine answers once its weights are loaded (after a restart: a while)

    def __init__(self, settings: EngineSettings, reconnect_s: float = 120.0):
        super().__init__(settings)
        self.address = settings.address
        self.client_id = settings.client_id or uuid.uuid4().hex
        self.reconnect_s = reconnect_s
        self.queue_status: dict | None = None
        self.tls_version: str | None = None
        self._sock: socket.socket | None = None
        self._closed = False
        self._jobs: dict[str, dict] = {}  # remote id -> {"local_id", "output", "message", "video"}
        self._local_ids: dict[str, str] = {}  # local id -> remote id
        self._jobs_lock = threading.Lock()

    # -- connecting -------------------------------------------------------------------------------
    def start(self) -> "RemoteEngine":
        self._connect()
        threading.Thread(target=self._read_socket, name="aa-engine-remote", daemon=True).start()
        return self

    def _host_port(self) -> tuple[str, int]:
        host, sep, port = self.address.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not port.isdigit() or not host:
            raise EngineStartFailed(f"The remote engine address {self.address!r} is not HOST:PORT.",
                                    "Example: 192.168.1.20:7860 or [::1]:7860; or set Engine to Local.")
        return host, int(port)

    def _connect(self, greeting_timeout: float = 10.0, announce: bool = True) -> None:
        host, port = self._host_port()
        try:
            sock = socket.create_connection((host, port), timeout=10)
        except OSError as exc:
            raise EngineStartFailed(
                f"Cannot reach the remote engine at {self.address} ({exc}).",
                "Start it there with `python -m aa_engine serve --listen 0.0.0.0:PORT`, and check the address, the firewall "
                "or your SSH tunnel (docs/remote.md).",
            ) from exc
        try:
            sock = self._wrap_tls(sock, host)
            sock.settimeout(greeting_timeout)
            reader = sock.makefile("rb")
            greeting = self._read_message(reader, "greeting")
            if greeting.get("type") == "error":
                raise EngineStartFailed(f"The remote engine at {self.address} refused the connection: {greeting.get('message')}", greeting.get("hint", ""))
            if greeting.get("type") != "auth_required":
                if greeting.get("type") == "hello":
                    raise EngineStartFailed(protocol_mismatch(greeting.get("protocol")), "Install the add-on and engine of the same release.")
                raise EngineStartFailed(f"{self.address} is not an Animate Anyone engine (it said {str(greeting)[:80]!r}).", "Check the address.")
            if greeting.get("protocol") != PROTOCOL_VERSION:
                raise EngineStartFailed(protocol_mismatch(greeting.get("protocol")), "Install the add-on and engine of the same release.")
            sock.sendall((json.dumps({"type": "auth", "token": self.settings.token, "client": self.client_id,
                                      "protocol": PROTOCOL_VERSION}) + "\n").encode())
            sock.settimeout(max(greeting_timeout, 15.0))  # a wrong token is answered after a growing delay
            answer = self._read_message(reader, "answer to the token")
            if answer.get("type") == "error":
                hint = answer.get("hint", "")
                if answer.get("code") == "auth":
                    hint = "Copy the token from the engine machine's token file into the add-on preferences (Token), or pass --token-file."
                raise EngineStartFailed(f"The remote engine at {self.address} refused the token: {answer.get('message')}", hint)
            if answer.get("type") != "hello":
                raise EngineStartFailed(f"The remote engine at {self.address} answered {answer.get('type')!r} instead of hello.", "Check the address.")
        except EngineStartFailed:
            sock.close()
            raise
        except (OSError, ValueError) as exc:
            sock.close()
            raise EngineStartFailed(f"The remote engine at {self.address} did not answer ({exc}).",
                                    "Is it an Animate Anyone engine, with TLS on both sides or neither? See its log.") from exc
        sock.settimeout(None)
        self._sock, self._reader, self._closed = sock, reader, False
        self.hello = answer
        if announce:
            self.events.put(answer)

    @staticmethod
    def _read_message(reader, what: str) -> dict:
        line = reader.readline(1024 * 1024)
        if not line:
            raise EngineStartFailed("The remote engine closed the connection before its " + what + ".",
                                    "Is the engine serving TLS (then set the TLS trust), or at its connection limit? See its log.")
        for message in json_lines([line]):
            return message
        raise ValueError(f"the engine's {what} is not a protocol message")

    def _wrap_tls(self, sock: socket.socket, host: str) -> socket.socket:
        s = self.settings
        if not (s.tls or s.tls_ca or s.tls_fingerprint):
            return sock
        import ssl

        pin = s.tls_fingerprint.replace(":", "").strip().lower()
        if pin:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # trust is the pinned fingerprint, checked below
        else:
            try:
                context = ssl.create_default_context(cafile=bpy_path(s.tls_ca) if s.tls_ca else None)
            except (OSError, ssl.SSLError) as exc:
                raise EngineStartFailed(f"The TLS CA file {s.tls_ca} cannot be read ({exc}).", "Point 'TLS CA File' at the engine's certificate or its CA (PEM).") from exc
        try:
            wrapped = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise EngineStartFailed(f"The remote engine's TLS certificate is not trusted ({exc.verify_message}).",
                                    "Set 'TLS CA File' to the engine's certificate (or its CA), or pin its SHA-256 fingerprint (docs/remote.md).") from exc
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise EngineStartFailed(f"TLS with the remote engine at {self.address} failed ({exc}).",
                                    "Does the engine serve TLS (--tls-cert)? Without it, clear the TLS settings.") from exc
        if pin:
            actual = hashlib.sha256(wrapped.getpeercert(binary_form=True)).hexdigest()
            if not hmac.compare_digest(actual, pin):
                wrapped.close()
                raise EngineStartFailed(f"The remote engine's certificate has the SHA-256 fingerprint {actual}, not the pinned {pin}.",
                                        "If the engine's certificate was renewed, pin the new fingerprint; otherwise you may not be talking to your engine.")
        self.tls_version = wrapped.version()
        return wrapped

    @property
    def pid(self) -> int | None:
        return None

    @property
    def alive(self) -> bool:
        return self._sock is not None and not self._closed

    # -- sending ----------------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        if message.get("type") == "job":
            message = self._remote_job(message)
        elif message.get("type") == "cancel" and isinstance(message.get("id"), str):
            message = dict(message, id=self._local_ids.get(message["id"], message["id"]))
        self._send_raw(message)

    def _send_raw(self, message: dict) -> None:
        if not self.alive:
            raise EngineStartFailed(f"The connection to the remote engine at {self.address} is closed.", "Render again to reconnect.")
        data = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise EngineStartFailed(f"The remote engine at {self.address} stopped answering ({exc}).", self.log_hint()) from exc

    def _remote_job(self, job: dict) -> dict:
        """The local job message as a remote one: files read and uploaded, no paths, `have` from the
        local output folder. Remembers the job so frames land in its output folder."""
        local_id, output = job["id"], Path(job["output"])
        remote_id = remote_job_id(local_id, output)
        message = {k: v for k, v in job.items() if k not in ("reference", "poses", "keypoints", "output")}
        message["id"] = remote_id
        message["reference"] = _upload(Path(job["reference"]), "reference image")
        if job.get("keypoints") is not None:
            track = job["keypoints"]
            if not isinstance(track, dict):
                try:
                    track = json.loads(Path(track).read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise EngineJobFailed(f"The keypoint track {job['keypoints']} cannot be read ({exc}).", "Export the poses again.") from exc
            message["keypoints"] = track
        elif isinstance(job.get("poses"), list):
            message["poses"] = [_upload(Path(p), "skeleton map") for p in job["poses"]]
        elif job.get("poses"):
            folder = Path(job["poses"])
            if folder.is_dir():
                message["poses"] = [_upload(p, "skeleton map") for p in sorted(folder.iterdir()) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
            else:
                message["poses"] = _upload(folder, "pose video")
        with self._jobs_lock:
            self._jobs[remote_id] = {"local_id": local_id, "output": output, "message": message, "video": None, "active": True}
            self._local_ids[local_id] = remote_id
        return dict(message, have=local_frames(output))

    # -- receiving --------------------------------------------------------------------------------
    def _read_socket(self) -> None:
        while True:
            try:
                for event in json_lines(iter(lambda: self._reader.readline(), b"")):
                    for out in self._translate(event):
                        self.events.put(out)
            except (OSError, ValueError):
                pass
            if self._closed or not self._reconnect():
                break
        self._closed = True
        self.events.put({"type": EXIT_EVENT, "returncode": None, "log_tail": []})

    def _reconnect(self) -> bool:
        """After a dropped connection with jobs running: connect again and resend them (the engine
        re-attaches or resumes them). False when there is nothing to resume or it does not work."""
        with self._jobs_lock:
            active = [(rid, job) for rid, job in self._jobs.items() if job["active"]]
        if not active:
            return False
        deadline = time.monotonic() + self.reconnect_s
        delay = 0.5
        while time.monotonic() < deadline and not self._closed:
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            try:
                self._connect(greeting_timeout=self.GREETING_TIMEOUT, announce=False)
            except EngineStartFailed:
                continue
            try:
                for rid, job in active:
                    self._send_raw(dict(job["message"], have=local_frames(job["output"])))
            except EngineStartFailed:
                continue
            return True
        return False

    def _translate(self, event: dict) -> list[dict]:
        """A remote event as the local engine would have sent it (frames written here first)."""
        kind = event.get("type")
        job = self._jobs.get(event.get("id")) if isinstance(event.get("id"), str) else None
        if job is None:
            if kind == "queue":
                self.queue_status = event
            return [event]
        local = dict(event, id=job["local_id"])
        if kind == "frame":
            try:
                path = write_frame(job["output"], int(event["index"]), event["data"], event["sha256"])
            except (OSError, ValueError, KeyError) as exc:
                return [{"type": "error", "id": job["local_id"], "code": "output",
                         "message": f"Frame {event.get('index')} could not be written to {job['output']} ({exc}).",
                         "hint": "Check the output folder's free space and permissions; render again to resume."}]
            return [{"type": "frame", "id": job["local_id"], "index": int(event["index"]), "path": str(path)}]
        if kind == "file":
            name = Path(str(event.get("name", ""))).name
            if name != event.get("name") or not name or name.startswith("."):
                return []
            try:
                job["video"] = str(write_file(job["output"], name, event["data"], event["sha256"]))
            except (OSError, ValueError, KeyError):
                pass
            return []
        if kind == "queued":
            position = event.get("position")
            stage = f"queued (position {position})" if position else "queued"
            return [{"type": "progress", "id": job["local_id"], "stage": stage, "step": 0, "total": 0,
                     "frames_done": 0, "frames_total": len(job["message"].get("poses") or []) or len((job["message"].get("keypoints") or {}).get("frames") or []),
                     "eta_s": event.get("eta_s")}]
        if kind in ("done", "error", "cancelled"):
            job["active"] = False
        if kind == "done":
            remove_extra_frames(job["output"], int(event.get("frames") or 0))
            local.update(output=str(job["output"]), video=job["video"])
        return [local]

    # -- ending -----------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 10.0) -> None:
        """Close the connection. Jobs running on the engine keep running there (collect them by
        rendering the same shot again); a job should be cancelled first when that is not wanted."""
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()

    def kill(self) -> None:
        self.shutdown()

    def log_hint(self) -> str:
        return f"The engine's log is on the machine at {self.address}."

    def status(self, timeout: float = 30.0) -> dict:
        """Ask the engine for its queue (`status`); returns the `queue` message."""
        self.queue_status = None
        self._send_raw({"type": "status"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next_event(timeout=max(0.0, deadline - time.monotonic()))
            if event is not None and event.get("type") == "queue":
                return event
            if event is not None and event.get("type") == EXIT_EVENT:
                break
        raise EngineStartFailed(f"The remote engine at {self.address} did not answer `status`.", "See its log.")


def describe_remote_engine(settings: EngineSettings) -> list[str]:
    """Connect, authenticate, ask for the queue, disconnect: lines describing the remote engine
    (the "Test Connection" button). Raises EngineStartFailed with what went wrong."""
    engine = RemoteEngine(settings, reconnect_s=0).start()
    try:
        hello = engine.hello or {}
        queue_ = engine.status()
    finally:
        engine.shutdown()
    weights = hello.get("weights") or {}
    running = queue_.get("running")
    lines = [
        f"Connected to {settings.address} ({'TLS ' + engine.tls_version if engine.tls_version else 'no TLS'}), "
        f"engine {hello.get('engine_version')}, protocol {hello.get('protocol')}",
        f"Device {hello.get('device')}, {hello.get('dtype')}",
        f"Model {hello.get('model')}, weights {weights.get('kind')}",
        f"Queue: {queue_.get('queued', 0)} waiting, " + (
            f"running a job ({running.get('stage') or 'starting'}, {running.get('frames_done', 0)}/{running.get('frames_total') or '?'} frames)"
            if running else "nothing running") + f"; {queue_.get('clients', 1)} client(s) connected",
    ]
    mine = [j for j in queue_.get("jobs") or [] if j.get("state") in ("queued", "running")]
    if mine:
        lines.append(f"Your jobs there: {len(mine)} queued or running")
    return lines


def remote_job_id(local_id: str, output: Path) -> str:
    """The job's name on the engine: the shot part of the local id and a hash of the local output
    folder, so the same shot rendered again (even from a restarted Blender) is the same job there."""
    prefix = local_id.rsplit("-", 1)[0] if "-" in local_id else local_id
    digest = hashlib.sha256(str(Path(output).expanduser().absolute()).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{prefix[:48]}-{digest}"


def _upload(path: Path, what: str) -> dict:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineJobFailed(f"The {what} {path} cannot be read ({exc.strerror or exc}).", "Export the poses again, or check the reference image path.") from exc
    return {"data": base64.b64encode(data).decode("ascii"), "name": path.name, "sha256": hashlib.sha256(data).hexdigest()}


def local_frames(output: Path) -> dict[str, str]:
    """{index: sha256} of the frames already in the local output folder (the remote job's `have`)."""
    out = {}
    folder = Path(output)
    if folder.is_dir():
        for path in folder.glob("frame_*.png"):
            stem = path.stem.split("_", 1)[1]
            if stem.isdigit() and path.is_file() and not path.is_symlink():
                out[str(int(stem))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _atomic_write(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    tmp = folder / f".{name}.part-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # a link in the target's place is replaced, never written through
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _checked(data_b64: str, digest: str) -> bytes:
    data = base64.b64decode(data_b64, validate=True)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError("the bytes do not match their sha256")
    return data


def write_frame(output: Path, index: int, data_b64: str, digest: str) -> Path:
    """Write a streamed frame into the local output folder, atomically, as frame_00001.png ..."""
    if index < 1:
        raise ValueError(f"frame index {index}")
    return _atomic_write(Path(output), f"frame_{index:05d}.png", _checked(data_b64, digest))


def write_file(output: Path, name: str, data_b64: str, digest: str) -> Path:
    return _atomic_write(Path(output), name, _checked(data_b64, digest))


def remove_extra_frames(output: Path, frames: int) -> None:
    """After `done`: frames beyond the job's count are from an older, longer render of the folder."""
    folder = Path(output)
    if not folder.is_dir():
        return
    for path in folder.glob("frame_*.png"):
        stem = path.stem.split("_", 1)[1]
        if stem.isdigit() and int(stem) > frames:
            path.unlink()


def bpy_path(path: str) -> str:
    """A path from the preferences, with Blender's // prefix resolved when bpy is there."""
    if path.startswith("//"):
        try:
            import bpy

            return bpy.path.abspath(path)
        except ImportError:
            pass
    return path
