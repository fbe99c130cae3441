"""The protocol over TCP (a remote engine): a real engine subprocess on loopback."""

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow


def _lines(sock_file, until):
    out = []
    while True:
        message = json.loads(sock_file.readline())
        out.append(message)
        if message["type"] == until:
            return out


def test_two_clients_in_turn_share_one_loaded_engine(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "aa_engine", "serve", "--weights", "random-tiny", "--listen", "127.0.0.1:0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", proc.stderr.readline())
            port = int(match.group(1)) if match else None
        assert port, "engine did not start listening"
        job = {"type": "job", "id": "remote", "reference": str(EXAMPLES / "reference.png"), "poses": str(EXAMPLES / "poses"),
               "output": str(tmp_path / "out"), "width": 64, "height": 64, "steps": 1, "video": False}
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock, sock.makefile("rw") as f:
            assert json.loads(f.readline())["type"] == "hello"
            f.write(json.dumps(job) + "\n")
            f.flush()
            assert _lines(f, "done")[-1]["frames"] == 16
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock, sock.makefile("rw") as f:
            assert json.loads(f.readline())["type"] == "hello"
            f.write(json.dumps(job) + "\n")  # same job again: resumes, nothing to redo
            f.flush()
            accepted = _lines(f, "done")[0]
            assert (accepted["type"], accepted["id"], accepted["frames"], accepted["resumed_frames"]) == ("accepted", "remote", 16, 16)
            f.write('{"type": "shutdown"}\n')
            f.flush()
            assert _lines(f, "bye")[-1]["type"] == "bye"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
