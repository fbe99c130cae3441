"""The stdin/stdout transport: protocol lines on stdout, everything else on stderr.

stdin is read as bytes and each line decoded as UTF-8 by the protocol (never with the locale's
encoding). SIGINT and SIGTERM end the engine cleanly: the running job stops after its current
step (its `cancelled` event is sent and its checkpoint kept, so resending the job resumes), then
the engine exits 0. A second signal while the job finishes its step is only logged; SIGKILL stops
at once (the frames and the checkpoint on disk are still whole: they are written atomically).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
from typing import Callable, Iterator

from aa_contract.protocol import MAX_LINE_BYTES
from aa_engine.errors import BadRequest
from aa_engine.protocol.session import EngineSession

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def protocol_stdout():
    """A private handle on the real stdout, with fd 1 and sys.stdout redirected to stderr so that
    no library print (Python or C) can corrupt the protocol stream."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def make_sender(stream):
    def send(message: dict) -> None:
        # ensure_ascii: the stream is pure ASCII whatever a message echoes (lone surrogates included).
        stream.write(json.dumps(message, ensure_ascii=True) + "\n")
        stream.flush()

    return send


class LineTooLong(bytes):
    """Stands for a line over MAX_LINE_BYTES (its bytes were skipped, not kept in memory)."""


def read_lines(read: Callable[[int], bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a byte source (`read(n)` returns up to n bytes, b"" at the end), split on
    b"\\n" only; a line longer than `limit` bytes is dropped as it arrives and stands as one
    LineTooLong, so no line can exhaust memory. The last line may lack its newline."""
    pending = bytearray()
    skipping = False  # inside an over-long line
    while True:
        chunk = read(1 << 16)
        if not chunk:
            if pending and not skipping:
                yield bytes(pending)
            return
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > limit:
                        pending.clear()
                        skipping = True
                break
            if skipping:
                skipping = False
                yield LineTooLong()
            elif len(pending) + end - start > limit:
                pending.clear()
                yield LineTooLong()
            else:
                pending += chunk[start:end + 1]
                yield bytes(pending)
                pending.clear()
            start = end + 1


def _reader(fd: int, lines: queue.SimpleQueue) -> None:
    # os.read on a duplicate of the descriptor, not sys.stdin.buffer: a thread blocked inside a
    # buffered reader's lock makes the interpreter abort at exit ("could not acquire lock").
    try:
        for line in read_lines(lambda n: os.read(fd, n)):
            lines.put(line)
    except (OSError, ValueError) as exc:
        log.warning("reading stdin failed (%s); treating it as closed", exc)
    lines.put(None)  # end of input


def serve_stdio(session: EngineSession, stdin_fd: int | None = None) -> int:
    """Serve the protocol on stdin (or the descriptor stdin_fd) and stdout until `shutdown`, the
    end of stdin, or SIGINT/SIGTERM. Returns the exit status (0)."""
    fd = os.dup(sys.stdin.fileno() if stdin_fd is None else stdin_fd)
    # stdin is read on its own thread and the main thread waits on this queue, so a signal never
    # interrupts a read or a send halfway: its handler only queues a note (SimpleQueue.put is
    # safe in a signal handler) and asks the running job to stop after its step.
    lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(fd, lines), name="stdin-reader", daemon=True).start()

    def on_signal(signum, _frame) -> None:
        session.cancel_running()
        lines.put(signum)

    previous = _install(on_signal)
    try:
        session.hello()
        while True:
            item = lines.get()
            if item is None:  # the client went away: stop any job (its frames and checkpoint stay)
                break
            if isinstance(item, int):
                log.info("%s: stopping the running job after its current step, then exiting",
                         signal.Signals(item).name)
                break
            if isinstance(item, LineTooLong):
                session.send_error(None, BadRequest(f"A line is longer than {MAX_LINE_BYTES} bytes; it was skipped.",
                                                    "Send smaller messages: give the keypoint track as a path."))
                continue
            if not session.handle_line(item):
                return 0
        session.close()
        return 0
    finally:
        _restore(previous)


def _install(handler) -> dict:
    """Install `handler` for SIGINT and SIGTERM (only possible on the main thread); returns the
    previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def _restore(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
