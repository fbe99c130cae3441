"""A TCP transport for the same protocol, for an engine on another machine (a studio's GPU box).

One client at a time; the weights stay loaded across connections. A client that disconnects
cancels its running job (its checkpoint stays, so resending the job resumes). `shutdown` stops
the engine. Paths in `job` messages are paths on the engine's machine (use shared storage).
There is no authentication: bind to 127.0.0.1 (the default) or a trusted network only.
"""

from __future__ import annotations

import logging
import socket

from aa_engine.pipeline import AnimateAnyonePipeline
from aa_engine.protocol.session import EngineSession
from aa_engine.protocol.stdio import make_sender
from aa_engine.weights import WeightsInfo

log = logging.getLogger(__name__)


def serve_tcp(pipe: AnimateAnyonePipeline, weights: WeightsInfo, host: str, port: int, ready=None) -> int:
    """Serve until a client sends `shutdown`. ready(port) is called once listening (port 0 = any free port)."""
    with socket.create_server((host, port)) as server:
        port = server.getsockname()[1]
        log.info("engine listening on %s:%d", host, port)
        if ready is not None:
            ready(port)
        while True:
            conn, address = server.accept()
            log.info("client connected from %s:%d", *address[:2])
            with conn, conn.makefile("r", encoding="utf-8") as reader, conn.makefile("w", encoding="utf-8") as writer:
                session = EngineSession(pipe, weights, make_sender(writer))
                keep_serving = True
                try:
                    session.hello()
                    for line in reader:
                        if not session.handle_line(line):
                            keep_serving = False
                            break
                except OSError as exc:
                    log.warning("connection lost: %s", exc)
                finally:
                    session.close(cancel=keep_serving)
            if not keep_serving:
                return 0
            log.info("client disconnected; waiting for the next one")
