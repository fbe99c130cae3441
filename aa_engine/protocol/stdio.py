"""The stdin/stdout transport: protocol lines on stdout, everything else on stderr."""

from __future__ import annotations

import json
import os
import sys

from aa_engine.protocol.session import EngineSession


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
        stream.write(json.dumps(message) + "\n")
        stream.flush()

    return send


def serve_stdio(session: EngineSession) -> int:
    session.hello()
    for line in sys.stdin:
        if not session.handle_line(line):
            return 0
    session.close()  # the client went away: stop any job (its frames and checkpoint stay)
    return 0
