"""A real remote engine (`python -m aa_engine serve --listen 127.0.0.1:0`) in its own process and work
root, and a raw protocol-3 client on a real loopback socket, for the remote-engine tests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PROTOCOL = 3


class RemoteEngineProcess:
    """`serve --listen` with random-tiny weights; `port`, `token` and the log (stderr) lines."""

    def __init__(self, work_root: Path, *extra: str, listen: str = "127.0.0.1:0", wait: bool = True, python: str = sys.executable):
        self.work_root = Path(work_root)
        self.argv = [python, "-m", "aa_engine", "serve", "--weights", "random-tiny", "--device", "cpu",
                     "--listen", listen, "--work-root", str(self.work_root), *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1, env=env)
        self.log: list[str] = []
        self.port: int | None = None
        self.token_file: Path | None = None
        self._listening = threading.Event()
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        if wait:
            self.wait_listening()

    def _read(self, stream) -> None:
        for line in stream:
            self.log.append(line.rstrip("\n"))
            found = re.search(r"token: .* (?:to|from) (\S+) \(", line)
            if found:
                self.token_file = Path(found.group(1))
            found = re.search(r"listening on \[?[^\]\s]*\]?:(\d+) ", line)
            if found:
                self.port = int(found.group(1))
                self._listening.set()

    def wait_listening(self, timeout: float = 180) -> "RemoteEngineProcess":
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the engine did not start listening:\n" + "\n".join(self.log[-30:]))
        return self

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(30)


class RawClient:
    """One connection speaking protocol 3 by hand (auth, job uploads, events)."""

    def __init__(self, port: int, token: str | None, client: str | None = None, tls: ssl.SSLContext | None = None,
                 auth: bool = True, timeout: float = 120):
        self.client = client or uuid.uuid4().hex
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls.wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock
        self.file = self.sock.makefile("rb")
        self.greeting = self.next()
        self.hello = None
        if auth:
            self.send({"type": "auth", "token": token, "client": self.client, "protocol": PROTOCOL})
            self.hello = self.next()

    def send(self, message: dict | bytes) -> None:
        data = message if isinstance(message, bytes) else (json.dumps(message) + "\n").encode()
        self.sock.sendall(data)

    def next(self, timeout: float | None = None) -> dict:
        if timeout is not None:
            self.sock.settimeout(timeout)
        line = self.file.readline()
        if not line:
            raise EOFError("the engine closed the connection")
        return json.loads(line)

    def until(self, kind: str, job_id: str | None = None, timeout: float = 300) -> list[dict]:
        """Messages up to and including the first `kind` (of job_id, when given)."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            message = self.next(max(1.0, deadline - time.monotonic()))
            seen.append(message)
            if message["type"] == kind and (job_id is None or message.get("id") == job_id):
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {kind} within {timeout} s; got {[m['type'] for m in seen][-10:]}")

    def close(self) -> None:
        """Really close (the makefile() reader holds the socket open otherwise)."""
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.file.close, self.sock.close):
            try:
                step()
            except OSError:
                pass


def upload(path: Path) -> dict:
    data = Path(path).read_bytes()
    return {"data": base64.b64encode(data).decode("ascii"), "name": Path(path).name, "sha256": hashlib.sha256(data).hexdigest()}


def remote_job(job_id: str, frames: int = 4, size: int = 32, steps: int = 1, **extra) -> dict:
    poses = sorted((EXAMPLES / "poses").glob("*.png"))[:frames]
    return {"type": "job", "id": job_id, "reference": upload(EXAMPLES / "reference.png"), "poses": [upload(p) for p in poses],
            "width": size, "height": size, "steps": steps, "context_frames": min(frames, 8), "context_overlap": min(2, frames - 1),
            "video": False, **extra}


def frames_of(messages: list[dict]) -> dict[int, bytes]:
    """The frames' bytes in `frame` messages, checked against their digests."""
    out = {}
    for m in messages:
        if m["type"] == "frame":
            data = base64.b64decode(m["data"])
            assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) == m["size"]
            out[m["index"]] = data
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_connections(port: int, count: int, half_written: bool) -> list[socket.socket]:
    """`count` raw connections that say nothing, or start a line and never finish it."""
    out = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if half_written:
            sock.sendall(b'{"type": "auth", "token": "')
        out.append(sock)
    return out


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (openssl), as a studio would make one (docs/remote.md)."""
    cert, key = folder / "engine.crt", folder / "engine.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=aa-engine",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert, key
