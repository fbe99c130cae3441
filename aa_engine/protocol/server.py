"""The remote engine: the protocol over TCP (optionally TLS) for many clients at once, with a token,
a queue, uploads instead of paths and frames streamed back (docs/protocol.md, docs/remote.md).

Threads: one accepts connections; one per connection does all of that connection's I/O (a
blocking read of the `auth` line under a deadline, then a select loop over the socket and a wake-up
pipe, so a TLS socket is never read and written from two threads); the queue's workers run the jobs
(aa_engine/job_queue.py) and hand events to the connections' outboxes without ever waiting on a
socket; a janitor removes finished jobs nobody collected. A slow, idle or half-written client only
ever holds its own thread; a client that goes away leaves its jobs running (detach).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import select
import socket
import ssl
import stat
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from aa_contract import protocol
from aa_engine import PROTOCOL_VERSION, __version__
from aa_engine.errors import BadRequest, EngineError, UserError
from aa_engine.executor import Executor
from aa_engine.job_queue import JobQueue, QueuedJob
from aa_engine.job_store import JobStore, UnsafePath, folder_name
from aa_engine.jobs import FRAME_NAME, JobSpec
from aa_engine.protocol.remote_job import parse_remote_job

log = logging.getLogger(__name__)

MB = 1024 * 1024


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # None: no token (loopback only)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_line_bytes: int = 64 * MB  # one protocol line, uploads included
    max_connections: int = 256  # open connections, authenticated or not
    max_clients: int = 64  # authenticated connections
    max_queued: int = 100  # queued + running jobs, all clients
    max_queued_per_client: int = 20
    auth_timeout: float = 10.0  # seconds from connect (TLS handshake included) to a valid `auth`
    io_timeout: float = 60.0  # a half-written line, or a client not reading, for this long: closed
    keep_s: float = 3 * 86400  # finished jobs nobody touched for this long are removed
    allow_shutdown: bool = False  # may a client stop the engine with `shutdown`?
    outbox_limit: int = 20000  # messages waiting for a client that does not read: then it is dropped


# -- addresses and tokens -------------------------------------------------------------------------
def parse_listen(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT', ':PORT' or 'PORT' (both = 127.0.0.1, loopback) -> (host, port)."""
    hint = "Examples: --listen 7860 (this machine only), --listen 0.0.0.0:7860, --listen [::1]:7860 (port 0: any free port)."
    if text.isdigit():
        text = ":" + text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BadRequest(f"--listen needs HOST:PORT (got {text!r}).", hint)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise BadRequest(f"An IPv6 address in --listen goes in brackets (got {text!r}).", hint)
    return host or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token in `path`, or a new random one written there with mode 0600. Returns (token, created)."""
    path = Path(path).expanduser()
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("the token file %s is readable by others (mode %o): chmod 600 it", path, mode)
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise BadRequest(f"The token in {path} is {len(token)} characters; at least 16 are needed.",
                             "Delete the file to have the engine make a random one, or put a long random string in it.")
        return token, False
    if path.exists():
        raise BadRequest(f"The token file {path} is not a file.", "Pass --token-file with a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token, True


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise BadRequest(f"The TLS certificate {cert} or key {key} cannot be loaded ({exc}).",
                         "Pass --tls-cert with a PEM certificate and --tls-key with its PEM private key (docs/remote.md).") from exc
    return context


def _wait(sock, wake, want_write: bool, timeout: float) -> tuple[bool, bool, bool]:
    """(sock readable, sock writable, wake readable) within timeout; poll() where there is one (no
    FD_SETSIZE limit with hundreds of connections), select() elsewhere."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN | (select.POLLOUT if want_write else 0))
        poller.register(wake, select.POLLIN)
        events = dict(poller.poll(timeout * 1000))
        mask = events.get(sock.fileno(), 0)
        closed = select.POLLHUP | select.POLLERR
        return bool(mask & (select.POLLIN | closed)), bool(mask & select.POLLOUT), bool(events.get(wake.fileno(), 0))
    readable, writable, _ = select.select([sock, wake], [sock] if want_write else [], [], timeout)
    return sock in readable, sock in writable, wake in readable


# -- one connection -------------------------------------------------------------------------------
class _Closed(Exception):
    """The connection ends (the peer went away, broke a rule, or the server stops)."""


@dataclass(eq=False)
class Subscription:
    """One connection's view of one job: the frames it has (by digest) and those sent to it."""

    job: QueuedJob
    have: dict[int, str]
    sent: set[int]
    listener: object = None


class Connection:
    def __init__(self, server: "EngineServer", sock: socket.socket, address):
        self.server = server
        self.sock = sock
        self.peer = address[0] if address else "?"
        self.name = f"{address[0]}:{address[1]}" if address else "?"
        self.client: str | None = None
        self.subs: dict[str, Subscription] = {}
        self._outbox: collections.deque = collections.deque()
        self._out_lock = threading.Lock()
        self._wake_r = self._wake_w = None
        self._closing = False
        self._rbuf = bytearray()

    # -- the thread ------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._serve()
        except _Closed as exc:
            if str(exc):
                log.info("%s: %s", self.name, exc)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.info("%s: connection lost (%s)", self.name, exc)
        except Exception:  # noqa: BLE001 - one connection's bug must not stop the engine
            log.error("%s: connection failed:\n%s", self.name, traceback.format_exc())
        finally:
            self._cleanup()

    def _serve(self) -> None:
        server = self.server
        deadline = time.monotonic() + server.config.auth_timeout
        self.sock.settimeout(server.config.auth_timeout)
        if server.tls is not None:
            self.sock = server.tls.wrap_socket(self.sock, server_side=True, do_handshake_on_connect=False)
            self.sock.do_handshake()
        if not server.admit_connection(self):
            self._send_now(self._error(None, EngineError(
                f"The engine has {server.config.max_connections} connections open, the most it takes.",
                "Try again in a moment; ask whoever runs the engine to raise --max-connections.", code="too_many_connections")))
            raise _Closed("refused: too many connections")
        self._send_now({"type": "auth_required", "protocol": PROTOCOL_VERSION, "engine_version": __version__, "tls": server.tls is not None})
        line = self._read_line_until(deadline)
        if line is None:
            self._send_now(self._error(None, EngineError(
                f"No `auth` message within {server.config.auth_timeout:.0f} s of connecting.",
                f"This engine speaks protocol {PROTOCOL_VERSION}: a client first sends "
                '{"type": "auth", "token": ..., "client": ..., "protocol": ' f"{PROTOCOL_VERSION}" "}. Update an older add-on.", code="auth")))
            raise _Closed("no auth in time")
        self._authenticate(line)
        # Authenticated: from now on one select loop does all reads and writes.
        self.sock.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.post({"type": "hello", "protocol": PROTOCOL_VERSION, "engine_version": __version__, **server.describe,
                   "remote": True, "limits": server.limits()})
        self._loop()

    # -- before auth: plain blocking I/O under a deadline -----------------------------------------
    def _read_line_until(self, deadline: float) -> bytes | None:
        while b"\n" not in self._rbuf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if len(self._rbuf) > 64 * 1024:
                self._send_now(self._error(None, EngineError("The first message is over 64 KB.", "Send `auth` first.", code="too_large")))
                raise _Closed("oversized auth line")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return None
            if not data:
                raise _Closed("")
            self._rbuf += data
        line, _, rest = bytes(self._rbuf).partition(b"\n")
        self._rbuf = bytearray(rest)
        return line

    def _send_now(self, message: dict) -> None:
        try:
            self.sock.settimeout(5)
            self.sock.sendall((json.dumps(message) + "\n").encode())
        except (OSError, ssl.SSLError):
            pass

    def _authenticate(self, line: bytes) -> None:
        server = self.server
        try:
            message = protocol.decode_line(line)
        except UserError as exc:
            self._send_now(self._error(None, exc))
            raise _Closed("a bad first line") from None
        if message["type"] != "auth":
            self._send_now(self._error(message.get("id") if isinstance(message.get("id"), str) else None, EngineError(
                f"The first message must be `auth` (got {message['type']!r}).",
                f"This engine speaks protocol {PROTOCOL_VERSION} and needs its token first; an add-on older than protocol "
                f"{PROTOCOL_VERSION} cannot use it: update the add-on.", code="auth")))
            raise _Closed("no auth")
        if message.get("protocol") != PROTOCOL_VERSION:
            self._send_now(self._error(None, EngineError(
                f"This engine speaks protocol {PROTOCOL_VERSION}; the client speaks {message.get('protocol')!r}.",
                "Install the add-on version that matches the engine (the same release).", code="protocol")))
            raise _Closed("protocol mismatch")
        token = message.get("token")
        good = server.token is None or (isinstance(token, str) and hmac.compare_digest(token.encode(), server.token.encode()))
        if not good:
            delay = server.auth_failed(self.peer)
            time.sleep(delay)  # only this connection's thread waits
            self._send_now(self._error(None, EngineError(
                "Wrong or missing token." if token else "This engine needs a token.",
                "Copy the token from the engine machine's token file (its path is printed when it starts) into the "
                "add-on preferences, or pass --token-file.", code="auth")))
            raise _Closed("wrong token")
        client = message.get("client")
        if not isinstance(client, str) or not 8 <= len(client) <= 128:
            self._send_now(self._error(None, BadRequest("`auth` needs 'client': a random id of 8 to 128 characters that this client keeps.",
                                                        "The add-on makes one; scripts can use uuid.uuid4().hex.", field="client")))
            raise _Closed("no client id")
        server.auth_succeeded(self.peer)
        if not server.admit_client(self):
            self._send_now(self._error(None, EngineError(f"The engine serves {server.config.max_clients} clients, the most it takes.",
                                                         "Try again later.", code="too_many_connections")))
            raise _Closed("too many clients")
        self.client = client
        log.info("%s: client authenticated", self.name)

    # -- after auth: the select loop --------------------------------------------------------------
    def post(self, item) -> None:
        """Queue a message (a dict) or a frame/file reference for this client; never blocks."""
        with self._out_lock:
            if self._closing:
                return
            if len(self._outbox) >= self.server.config.outbox_limit:
                self._closing = True
                log.warning("%s: the client does not read its messages; dropping it (its jobs keep running)", self.name)
            self._outbox.append(item)
        self._wake()

    def _wake(self) -> None:
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"x")
            except (BlockingIOError, OSError):
                pass

    def close_soon(self) -> None:
        with self._out_lock:
            self._closing = True
        self._wake()

    def _loop(self) -> None:
        config = self.server.config
        sock = self.sock
        wbuf = bytearray()
        chunk = None
        last_read = last_write = time.monotonic()
        while True:
            if len(wbuf) < 1 * MB:
                self._fill(wbuf)
            with self._out_lock:
                done = self._closing and not self._outbox
            if done and not wbuf:
                raise _Closed("")
            pending_tls = isinstance(sock, ssl.SSLSocket) and sock.pending()
            readable, writable, woken = _wait(sock, self._wake_r, bool(wbuf), 0 if pending_tls else 1.0)
            now = time.monotonic()
            if woken:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if readable or pending_tls:
                try:
                    data = sock.recv(256 * 1024)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    data = None
                if data == b"":
                    raise _Closed("client disconnected")
                if data:
                    last_read = now
                    self._rbuf += data
                    self._take_lines()
            if wbuf and writable:
                if chunk is None:
                    chunk = bytes(wbuf[: 256 * 1024])  # TLS: a write that must be retried is retried with the same bytes
                try:
                    sent = sock.send(chunk)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    sent = 0
                if sent:
                    del wbuf[:sent]
                    chunk = None
                    last_write = now
            if not wbuf:
                last_write = now
            if self._rbuf and now - last_read > config.io_timeout:
                raise _Closed(f"a line half-written for {config.io_timeout:.0f} s")
            if wbuf and now - last_write > config.io_timeout:
                raise _Closed(f"the client read nothing for {config.io_timeout:.0f} s")

    def _take_lines(self) -> None:
        limit = self.server.config.max_line_bytes
        while True:
            end = self._rbuf.find(b"\n")
            if end < 0:
                if len(self._rbuf) > limit:
                    self._fatal(EngineError(f"A line is over {limit // MB} MB, this engine's limit.",
                                            "Send fewer or smaller frames per job, or a keypoint track instead of maps.", code="too_large"))
                return
            line = bytes(self._rbuf[:end])
            del self._rbuf[: end + 1]
            if len(line) > limit:
                self._fatal(EngineError(f"A line is {len(line)} bytes; this engine takes at most {limit}.",
                                        "Send fewer or smaller frames per job.", code="too_large"))
                return
            if line.strip():
                self._handle_line(line)

    def _fatal(self, error: EngineError) -> None:
        self.post(self._error(None, error))
        self._rbuf.clear()
        self.close_soon()

    # -- turning outbox items into bytes ----------------------------------------------------------
    def _fill(self, wbuf: bytearray) -> None:
        while len(wbuf) < 1 * MB:
            with self._out_lock:
                if not self._outbox:
                    return
                item = self._outbox.popleft()
            data = self._render(item)
            if data:
                wbuf += data

    def _render(self, item) -> bytes | None:
        if isinstance(item, dict):
            return (json.dumps(item) + "\n").encode()
        kind, sub, value = item
        job = sub.job
        if kind == "frame":
            if value in sub.sent:
                return None
            try:
                data = self.server.store.read_file(job.folder, FRAME_NAME.format(value))
            except UnsafePath as exc:
                sub.sent.add(value)
                return (json.dumps(self._error(job.id, exc)) + "\n").encode()
            except FileNotFoundError:
                return None
            digest = hashlib.sha256(data).hexdigest()
            sub.sent.add(value)
            if sub.have.get(value) == digest:
                return None
            return (json.dumps({"type": "frame", "id": job.id, "index": value, "size": len(data), "sha256": digest,
                                "data": base64.b64encode(data).decode("ascii")}) + "\n").encode()
        if kind == "file":
            try:
                data = self.server.store.read_file(job.folder, value)
            except (UnsafePath, OSError) as exc:
                log.warning("job %s: %s not sent (%s)", job.id, value, exc)
                return None
            return (json.dumps({"type": "file", "id": job.id, "name": value, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "data": base64.b64encode(data).decode("ascii")}) + "\n").encode()
        return None

    # -- messages ---------------------------------------------------------------------------------
    @staticmethod
    def _error(job_id, error: UserError) -> dict:
        return {"type": "error", "id": job_id, **error.to_dict()}

    def _handle_line(self, line: bytes) -> None:
        try:
            message = protocol.decode_line(line)
        except UserError as exc:
            self.post(self._error(None, exc))
            return
        kind = message["type"]
        job_id = message.get("id") if isinstance(message.get("id"), str) else None
        try:
            if kind == "job":
                self._job(message)
            elif kind == "attach":
                self._attach(message)
            elif kind == "cancel":
                self._cancel(job_id)
            elif kind == "status":
                self.post({"type": "queue", **self.server.queue.snapshot(self.client), "clients": self.server.client_count(),
                           "device": self.server.describe.get("device"), "model": self.server.describe.get("model")})
            elif kind == "ping":
                self.post({"type": "pong"})
            elif kind == "shutdown":
                if not self.server.config.allow_shutdown:
                    raise EngineError("A remote client cannot stop this engine.",
                                      "Stop it on its machine (Ctrl+C, or your service manager), or start it with --allow-remote-shutdown.", code="forbidden")
                self.post({"type": "bye"})
                self.close_soon()
                threading.Thread(target=self.server.stop, name="aa-shutdown", daemon=True).start()
            elif kind == "auth":
                raise BadRequest("Already authenticated.", "Send `auth` once, first.")
            else:
                raise BadRequest(f"Unknown message type {kind!r}.", "Known: job, attach, cancel, status, ping, shutdown.")
        except UserError as exc:
            self.post(self._error(job_id, exc))

    def _job(self, message: dict) -> None:
        server = self.server
        remote = parse_remote_job(message, server.config.max_line_bytes)
        existing = server.queue.find(self.client, remote.id)
        if existing is not None and existing.digest == remote.digest and (existing.active or existing.state == "done"):
            self._subscribe(existing, remote.have, attached=True)  # the same job again: collect it
            return
        if existing is not None and existing.active:
            raise EngineError(f"Your job {remote.id!r} is still {existing.state} with other inputs or settings.",
                              "Cancel it first, or give the new job another id.", code="busy")
        name = folder_name(self.client, remote.id)
        folder = server.store.path(name)
        spec = JobSpec.from_message(remote.localise(folder))  # checks the settings and the track before writing anything
        server.queue.check_room(self.client)
        server.store.prepare(name)
        for relative, data in remote.uploads.items():
            server.store.write_input(name, relative, data)
        job = QueuedJob(remote.id, self.client, name, spec, remote.digest, remote.priority, remote.frames_total)
        sub = Subscription(job, remote.have, set())
        sub.listener = lambda j, event, sub=sub: self._on_event(sub, event)
        with job.lock:  # the `queued` answer goes out before any event of the job
            job.listeners.append(sub.listener)
            try:
                server.queue.submit(job)
            except UserError:
                job.listeners.remove(sub.listener)
                raise
            self._replace_sub(remote.id, sub)
            self.post({"type": "queued", "id": job.id, "position": server.queue.position(job), "eta_s": server.queue.eta(job), "attached": False})

    def _attach(self, message: dict) -> None:
        job_id = message.get("id")
        if not isinstance(job_id, str):
            raise BadRequest("`attach` needs the 'id' of one of your jobs.", 'Example: {"type": "attach", "id": "shot_010", "have": {}}', field="id")
        from aa_engine.protocol.remote_job import parse_have

        job = self.server.queue.find(self.client, job_id)
        if job is None:
            raise EngineError(f"You have no job {job_id!r} on this engine.",
                              "It finished more than the engine's keep time ago, the engine was restarted, or another client sent it. "
                              "Send the job again: frames and checkpoint still in the work root are reused.", code="not_found")
        self._subscribe(job, parse_have(message.get("have"), job_id), attached=True)

    def _replace_sub(self, job_id: str, sub: Subscription) -> None:
        old = self.subs.get(job_id)
        if old is not None and old is not sub:
            old.job.detach(old.listener)
        self.subs[job_id] = sub

    def _subscribe(self, job: QueuedJob, have: dict[int, str], attached: bool) -> None:
        sub = Subscription(job, have, set())
        sub.listener = lambda j, event, sub=sub: self._on_event(sub, event)

        def replay(job: QueuedJob) -> None:
            self.post({"type": "queued", "id": job.id, "position": self.server.queue.position(job), "eta_s": self.server.queue.eta(job),
                       "attached": attached})
            if job.accepted is not None:
                self.post(job.accepted)
                for index in self._frames_on_disk(job):
                    self.post(("frame", sub, index))
                if job.progress is not None and job.final is None:
                    self.post(job.progress)
            if job.final is not None:
                self._on_event(sub, job.final)

        self._replace_sub(job.id, sub)
        job.attach(sub.listener, replay)
        self.server.store.touch(job.folder)

    def _frames_on_disk(self, job: QueuedJob) -> list[int]:
        total = job.frames_total or 0
        folder = self.server.store.path(job.folder)
        return [i for i in range(1, total + 1) if os.path.lexists(folder / FRAME_NAME.format(i))]

    def _cancel(self, job_id: str | None) -> None:
        if job_id is None:
            raise BadRequest("`cancel` needs the 'id' of one of your jobs.", 'Example: {"type": "cancel", "id": "shot_010"}', field="id")
        job = self.server.queue.cancel(self.client, job_id)
        if job_id not in self.subs or self.subs[job_id].job is not job:
            self._subscribe(job, {}, attached=True)  # so this connection hears how it ends

    def _on_event(self, sub: Subscription, event: dict) -> None:
        """A job event for this connection, in the remote form: frames as bytes, no engine paths."""
        kind = event["type"]
        job = sub.job
        if kind == "frame":
            self.post(("frame", sub, event["index"]))
        elif kind == "done":
            for index in range(1, int(event.get("frames") or 0) + 1):
                self.post(("frame", sub, index))  # frames resumed from disk, and any not yet sent
            video = "video.mp4" if event.get("video") else None
            if video:
                self.post(("file", sub, video))
            self.post({**event, "output": None, "video": video})
        elif kind == "error":
            folder = str(self.server.store.path(job.folder))
            self.post({**event, "message": str(event.get("message", "")).replace(folder, "(the job's folder)"),
                       "hint": str(event.get("hint", "")).replace(folder, "(the job's folder)")})
        else:
            self.post(event)

    def _cleanup(self) -> None:
        for sub in self.subs.values():
            sub.job.detach(sub.listener)  # the job keeps running: detach
        self.subs.clear()
        self.server.forget(self)
        for s in (self.sock, self._wake_r, self._wake_w):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


# -- the server -----------------------------------------------------------------------------------
class EngineServer:
    def __init__(self, executor: Executor, store: JobStore, config: ServerConfig):
        self.executor = executor
        self.store = store
        self.config = config
        self.token = config.token
        self.tls = tls_context(config.tls_cert, config.tls_key) if config.tls_cert else None
        if config.tls_key and not config.tls_cert:
            raise BadRequest("--tls-key needs --tls-cert.", "Pass both (docs/remote.md).")
        if config.token is None and not is_loopback(config.host):
            raise BadRequest(f"Listening on {config.host} without a token would let anyone on the network use this engine.",
                             "Drop --no-token (the engine then makes a token), or listen on 127.0.0.1 and use an SSH tunnel (docs/remote.md).")
        self.queue = JobQueue(executor, config.max_queued, config.max_queued_per_client, config.keep_s)
        self.describe: dict = {}
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()
        self._clients: set[Connection] = set()
        self._failures: dict[str, tuple[int, float]] = {}
        self._stopped = threading.Event()
        self.address: tuple[str, int] | None = None

    # -- binding and serving ----------------------------------------------------------------------
    def bind(self) -> tuple[str, int]:
        """Listen (before the weights load, so a port in use fails at once). Returns (host, port)."""
        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._listener = socket.create_server((host, port), family=family, backlog=512)
        except socket.gaierror as exc:
            raise BadRequest(f"Cannot listen on {host!r}: no such address ({exc.strerror}).", "Use an IP address of this machine, 127.0.0.1 or 0.0.0.0.") from None
        except OSError as exc:
            import errno

            if exc.errno == errno.EADDRINUSE:
                raise BadRequest(f"Port {port} on {host} is already in use (another engine?).",
                                 "Stop the program using it, or pick another port (--listen HOST:0 picks a free one).") from None
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                raise BadRequest(f"Cannot listen on {host}:{port}: {exc.strerror}.", "Use an address of this machine (127.0.0.1, ::1 or 0.0.0.0).") from None
            if exc.errno == errno.EACCES:
                raise BadRequest(f"Port {port} needs administrator rights.", "Use a port above 1023, e.g. 7860.") from None
            raise BadRequest(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.", "Check the address.") from None
        self._listener.settimeout(0.5)
        self.address = self._listener.getsockname()[:2]
        return self.address

    def limits(self) -> dict:
        c = self.config
        return {"max_line_bytes": c.max_line_bytes, "max_queued": c.max_queued, "max_queued_per_client": c.max_queued_per_client,
                "keep_s": c.keep_s}

    def serve_forever(self) -> int:
        """Accept connections until stop(). Returns 0."""
        if self._listener is None:
            self.bind()
        self.describe = self.executor.describe()
        self.queue.start()
        for name in self.store.stale(self.config.keep_s):
            log.info("removing job folder %s: untouched for longer than the keep time", name)
            self.store.remove(name)
        threading.Thread(target=self._janitor, name="aa-janitor", daemon=True).start()
        try:
            while not self._stopped.is_set():
                try:
                    sock, address = self._listener.accept()
                except (socket.timeout, TimeoutError):
                    continue
                except OSError:
                    if self._stopped.is_set():
                        break
                    time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                    continue
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                connection = Connection(self, sock, address)
                with self._lock:
                    self._connections.add(connection)
                threading.Thread(target=connection.run, name=f"aa-conn-{address[0]}:{address[1]}", daemon=True).start()
        finally:
            self._close_everything()
        return 0

    def stop(self) -> None:
        self._stopped.set()

    def _close_everything(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close_soon()
        self.queue.stop(cancel=True, timeout=30)
        self.executor.close()

    def _janitor(self) -> None:
        interval = max(0.5, min(60.0, self.config.keep_s / 4))
        while not self._stopped.wait(interval):
            for job in self.queue.expire():
                log.info("removing job %s: finished and not collected for %.0f s", job.id, self.config.keep_s)
                self.store.remove(job.folder)
            for name in self.store.stale(self.config.keep_s, keep=self.queue.folders()):
                self.store.remove(name)

    # -- bookkeeping for connections --------------------------------------------------------------
    def admit_connection(self, connection: Connection) -> bool:
        with self._lock:
            return len(self._connections) <= self.config.max_connections

    def admit_client(self, connection: Connection) -> bool:
        with self._lock:
            if len(self._clients) >= self.config.max_clients:
                return False
            self._clients.add(connection)
            return True

    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def forget(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._clients.discard(connection)

    def auth_failed(self, peer: str) -> float:
        """Record a failed `auth` from this address; returns how long to wait before answering."""
        now = time.monotonic()
        with self._lock:
            if len(self._failures) > 10000:  # many addresses: forget the ones quiet for 10 minutes
                self._failures = {k: v for k, v in self._failures.items() if now - v[1] < 600}
            count, last = self._failures.get(peer, (0, now))
            if now - last > 600:
                count = 0
            count += 1
            self._failures[peer] = (count, now)
        return min(0.25 * 2 ** (count - 1), 8.0)

    def auth_succeeded(self, peer: str) -> None:
        with self._lock:
            self._failures.pop(peer, None)
