"""The remote engine's pieces without a model: addresses, tokens, job folders, remote job messages,
and the queue's order. Fast; the real-socket tests are in test_remote_engine.py."""

from __future__ import annotations

import base64
import threading

import pytest

from aa_engine.errors import UserError


def test_listen_addresses():
    from aa_engine.protocol.server import is_loopback, parse_listen

    assert parse_listen("7860") == ("127.0.0.1", 7860)  # a bare port: loopback
    assert parse_listen(":0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:7860") == ("::1", 7860)
    assert parse_listen("0.0.0.0:7860") == ("0.0.0.0", 7860)
    for bad, words in (("::1:7860", "brackets"), ("gpu-box", "HOST:PORT"), ("h:70000", "HOST:PORT")):
        with pytest.raises(UserError, match=words):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("gpu-box")


def test_a_non_loopback_address_without_a_token_is_refused(tmp_path):
    from aa_engine.job_store import JobStore
    from aa_engine.protocol.server import EngineServer, ServerConfig

    with pytest.raises(UserError, match="without a token"):
        EngineServer(None, JobStore(tmp_path), ServerConfig(host="0.0.0.0", token=None))
    EngineServer(None, JobStore(tmp_path), ServerConfig(host="127.0.0.1", token=None))  # loopback: allowed


def test_the_token_file_is_made_private_and_read_back(tmp_path):
    from aa_engine.protocol.server import load_or_create_token

    token, created = load_or_create_token(tmp_path / "sub" / "token")
    assert created and len(token) >= 40 and (tmp_path / "sub" / "token").stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path / "sub" / "token") == (token, False)
    (tmp_path / "short").write_text("abc\n")
    with pytest.raises(UserError, match="at least 16"):
        load_or_create_token(tmp_path / "short")


@pytest.mark.parametrize("job_id", ["../../etc/passwd", "..", ".", "", "a/b\\c", "x" * 128, "shot 010 ünïcode", "/abs"])
def test_job_folder_names_are_safe_and_unique(job_id):
    from aa_engine.job_store import folder_name

    name = folder_name("client-a", job_id)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name not in ("", ".", "..")
    assert len(name) <= 48 + 17 and all(c.isascii() for c in name)
    assert folder_name("client-b", job_id) != name  # two clients' jobs of the same id never share a folder


def test_the_job_store_removes_links_instead_of_following_them(tmp_path):
    from aa_engine.job_store import JobStore, UnsafePath

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"outside")
    store = JobStore(tmp_path / "work")
    (store.jobs / "job-1").symlink_to(outside)  # a job folder that is a link
    folder = store.prepare("job-1")
    assert folder.is_dir() and not folder.is_symlink() and (outside / "keep.png").read_bytes() == b"outside"
    (folder / ".resume").symlink_to(outside)  # a link inside
    (folder / "frame_00001.png").symlink_to(outside / "keep.png")
    with pytest.raises(UnsafePath, match="symbolic link"):
        store.read_file("job-1", "frame_00001.png")
    store.prepare("job-1")
    assert not (folder / ".resume").exists() and not (folder / "frame_00001.png").exists()
    store.write_input("job-1", "inputs/reference.png", b"bytes")
    assert (folder / "inputs" / "reference.png").read_bytes() == b"bytes"
    store.remove("job-1")
    assert not folder.exists() and (outside / "keep.png").read_bytes() == b"outside"
    with pytest.raises(UnsafePath):
        store.path("../escape")


def _upload(data: bytes) -> dict:
    return {"data": base64.b64encode(data).decode()}


def test_remote_job_messages():
    from aa_engine.protocol.remote_job import parse_remote_job

    job = {"type": "job", "id": "s1", "reference": _upload(b"png"), "poses": [_upload(b"a"), _upload(b"b")], "steps": 2, "priority": 3,
           "have": {"1": "ab" * 32}}
    remote = parse_remote_job(job, 1000)
    assert remote.uploads == {"inputs/reference.png": b"png", "inputs/poses/pose_00001.png": b"a", "inputs/poses/pose_00002.png": b"b"}
    assert (remote.priority, remote.have, remote.frames_total) == (3, {1: "ab" * 32}, 2)
    assert remote.message == {"type": "job", "id": "s1", "steps": 2, "reference": "inputs/reference.png",
                              "poses": ["inputs/poses/pose_00001.png", "inputs/poses/pose_00002.png"]}
    assert parse_remote_job(dict(job, have={}, priority=0), 1000).digest == remote.digest  # have/priority: the same job
    assert parse_remote_job(dict(job, steps=3), 1000).digest != remote.digest
    with pytest.raises(UserError, match="this engine takes at most 2") as info:
        parse_remote_job(job, 2)
    assert info.value.code == "too_large"
    for change, code, field in ((dict(reference={"data": "%%%"}), "bad_request", "reference"),
                                (dict(reference={"data": base64.b64encode(b"x").decode(), "sha256": "0" * 64}), "bad_request", "reference"),
                                (dict(have={"0": "x"}), "bad_request", "have"),
                                (dict(priority=1000), "bad_request", "priority"),
                                (dict(id="x" * 200), "bad_request", "id"),
                                (dict(poses=[_upload(b"a"), "/etc/passwd"]), "forbidden_path", "poses")):
        with pytest.raises(UserError) as info:
            parse_remote_job(dict(job, **change), 1000)
        assert (info.value.code, info.value.field) == (code, field), change


class _Executor:
    """Runs jobs by waiting for the test to release them, and records the order."""

    slots = 1

    def __init__(self):
        self.order: list[str] = []
        self.release = threading.Semaphore(0)

    def describe(self):
        return {}

    def run(self, spec, emit, should_cancel):
        self.order.append(spec.id)
        self.release.acquire()
        return {"frames": 0, "output": None, "video": None, "elapsed_s": 0.0}

    def close(self):
        pass


def test_the_queue_runs_by_priority_then_first_in_first_out():
    from aa_engine.config import GenerationConfig
    from aa_engine.job_queue import JobQueue, QueuedJob, QueueFull
    from aa_engine.jobs import JobSpec

    executor = _Executor()
    queue = JobQueue(executor, max_queued=10, max_per_client=4)
    queue.start()
    done = threading.Event()

    def job(owner, job_id, priority=0):
        spec = JobSpec(job_id, None, [], None, GenerationConfig(width=32, height=32, steps=1))
        j = QueuedJob(job_id, owner, f"{job_id}-x", spec, job_id, priority, 2)
        j.listeners.append(lambda jj, event: done.set() if event["type"] == "done" and jj.id == "last" else None)
        return j

    first = job("a", "first")
    queue.submit(first)
    while queue.position(first) != 0:
        pass
    for owner, job_id, priority in (("b", "b1", 0), ("a", "a1", 0), ("b", "b2", 5), ("a", "last", -1)):
        queue.submit(job(owner, job_id, priority))
    assert [j["id"] for j in queue.snapshot("b")["jobs"]] == ["b1", "b2"]
    assert queue.snapshot("b")["running"].get("id") is None and queue.snapshot("a")["running"]["id"] == "first"
    with pytest.raises(QueueFull):
        queue.submit(job("a", "a2"))
        queue.submit(job("a", "a3"))  # a has first, a1, last, a2: the fifth is one too many
    with pytest.raises(UserError, match="no queued or running job 'b1'"):
        queue.cancel("a", "b1")  # not a's job
    for _ in range(6):
        executor.release.release()
    assert done.wait(30)
    assert executor.order == ["first", "b2", "b1", "a1", "a2", "last"]
    queue.stop()


@pytest.mark.parametrize("greeting, words", [
    ({"type": "hello", "protocol": 2, "device": "cpu"}, "The engine speaks protocol 2, older than this add-on's 3: update the engine."),
    ({"type": "auth_required", "protocol": 4}, "The engine speaks protocol 4, newer than this add-on's 3: update the add-on."),
])
def test_the_addon_names_which_side_is_older(greeting, words):
    """A protocol-2 engine (the old `serve --listen` said hello at once) or a newer one: the add-on's
    client says which side to update, before sending any token."""
    import json
    import socket

    from blender_addon.engine_client import EngineSettings, RemoteEngine
    from blender_addon.errors import EngineStartFailed

    with socket.create_server(("127.0.0.1", 0)) as server:
        received = []

        def serve_once():
            conn, _ = server.accept()
            with conn:
                conn.sendall((json.dumps(greeting) + "\n").encode())
                conn.settimeout(5)
                try:
                    received.append(conn.recv(4096))
                except OSError:
                    pass

        thread = threading.Thread(target=serve_once)
        thread.start()
        with pytest.raises(EngineStartFailed) as info:
            RemoteEngine(EngineSettings(address=f"127.0.0.1:{server.getsockname()[1]}", token="secret-token-secret")).start()
        thread.join(10)
    assert info.value.message == words
    assert all(b"secret-token" not in r for r in received)  # the token never went to it
