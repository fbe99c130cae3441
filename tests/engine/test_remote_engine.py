"""The remote engine (`serve --listen`, protocol 3): a real engine process with random-tiny weights
and its own work root, real sockets on 127.0.0.1. One engine for the module.

Covers issue 8's security and multi-client requirements: token, paths refused, a symlinked frame,
the queue order with priorities, cancel isolation, detach and collect, a client killed mid-job,
bad bytes, oversized lines, idle and half-written connections.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from remote_helpers import PROTOCOL, RawClient, RemoteEngineProcess, frames_of, open_connections, remote_job, sha

pytestmark = pytest.mark.slow  # one engine start (~10 s) and a dozen tiny jobs


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    work = tmp_path_factory.mktemp("engine-work")
    process = RemoteEngineProcess(work, "--max-line-mb", "1", "--auth-timeout", "20", "--max-queued-per-client", "8",
                                  "--max-connections", "205")
    yield process
    process.stop()
    assert process.proc.returncode == 0, "\n".join(process.log[-20:])
    assert not [line for line in process.log if "Traceback" in line], "\n".join(process.log)


def connect(engine, **kw) -> RawClient:
    return RawClient(engine.port, engine.token, **kw)


def job_folder(engine, client: str, job_id: str):
    from aa_engine.job_store import folder_name

    return engine.work_root / "jobs" / folder_name(client, job_id)


# -- authentication -------------------------------------------------------------------------------
def test_the_token_file_is_private_and_the_greeting_says_auth_first(engine):
    assert oct(engine.token_file.stat().st_mode & 0o777) == "0o600"
    client = connect(engine)
    assert client.greeting == {"type": "auth_required", "protocol": PROTOCOL, "engine_version": client.greeting["engine_version"], "tls": False}
    hello = client.hello
    assert hello["type"] == "hello" and hello["protocol"] == PROTOCOL and hello["remote"] is True
    assert hello["device"] == "cpu" and hello["model"] == "random-tiny" and hello["limits"]["max_line_bytes"] == 1024 * 1024
    client.close()


def test_a_wrong_or_missing_token_is_refused_closed_and_slowed_down(engine):
    timings = []
    for token in ("not-the-token-but-long-enough", None, "x" * 43):
        started = time.monotonic()
        client = RawClient(engine.port, token)
        timings.append(time.monotonic() - started)
        assert client.hello["type"] == "error" and client.hello["code"] == "auth", client.hello
        assert "token" in client.hello["message"].lower() and "token file" in client.hello["hint"]
        with pytest.raises(EOFError):
            client.next(10)  # the connection is closed
    assert timings[2] > timings[0] + 0.4, timings  # 0.25 s, 0.5 s, 1 s: repeated failures wait longer
    good = connect(engine)  # a right token still works at once
    assert good.hello["type"] == "hello"
    good.close()


def test_anything_before_auth_is_refused_and_an_old_protocol_is_named(engine):
    client = RawClient(engine.port, None, auth=False)
    client.send(remote_job("early"))
    error = client.next(10)
    assert error["code"] == "auth" and "protocol 3" in error["hint"] and "update the add-on" in error["hint"]
    with pytest.raises(EOFError):
        client.next(10)
    client = RawClient(engine.port, None, auth=False)
    client.send({"type": "auth", "token": engine.token, "client": "c" * 16, "protocol": 2})
    error = client.next(10)
    assert error["code"] == "protocol" and "protocol 3" in error["message"] and "2" in error["message"]


# -- paths ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("reference", "/etc/passwd"),
    ("output", "/tmp/outside-the-work-root"),
    ("poses", ["/etc/passwd"]),
    ("poses", "/etc"),
    ("keypoints", "/etc/passwd"),
])
def test_a_remote_job_naming_a_path_on_the_engine_is_refused(engine, field, value):
    client = connect(engine)
    job = remote_job(f"path-{field}")
    if field == "keypoints":
        job.pop("poses")
    job[field] = value
    client.send(job)
    error = client.next(30)
    assert error["type"] == "error" and error["code"] == "forbidden_path" and error["field"] == field, error
    assert error["id"] == f"path-{field}" and ("engine's machine" in error["message"] or "work root" in error["message"])
    assert not job_folder(engine, client.client, f"path-{field}").exists()  # nothing was written
    client.send({"type": "ping"})
    assert client.next(10)["type"] == "pong"  # the connection and the engine go on
    client.close()


def test_a_symlinked_frame_in_the_work_root_is_not_followed(engine, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"SECRET OUTSIDE THE WORK ROOT")
    client = connect(engine)
    client.send(remote_job("linked", frames=3))
    done = client.until("done", "linked")
    assert len(frames_of(done)) == 3
    folder = job_folder(engine, client.client, "linked")
    frame = folder / "frame_00002.png"
    frame.unlink()
    frame.symlink_to(secret)  # someone on the engine's box plants a link
    client.send({"type": "attach", "id": "linked", "have": {}})
    messages = client.until("done", "linked")
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["unsafe_path"] and "frame_00002.png" in errors[0]["message"]
    assert sorted(frames_of(messages)) == [1, 3]
    assert all(b"SECRET" not in data for data in frames_of(messages).values())
    client.close()


# -- bad bytes and limits -------------------------------------------------------------------------
def test_bad_bytes_unknown_types_and_bad_fields_get_errors_and_the_connection_goes_on(engine):
    client = connect(engine)
    client.send(b"\xff\n")
    assert client.next(10)["code"] == "bad_request"
    client.send(b"{not json\n")
    assert client.next(10)["code"] == "bad_request"
    client.send({"type": "dance"})
    assert client.next(10)["code"] == "bad_request"
    client.send(remote_job("bad-width", width=60))
    error = client.next(10)
    assert error["code"] == "bad_request" and error["field"] == "width" and "multiple of 8" in error["message"]
    client.send(remote_job("bad-priority", priority="high"))
    assert client.next(10)["field"] == "priority"
    client.send({"type": "cancel", "id": "nothing"})
    assert client.next(10)["code"] == "not_found"
    client.send({"type": "shutdown"})
    assert client.next(10)["code"] == "forbidden"
    client.send({"type": "ping"})
    assert client.next(10)["type"] == "pong"
    client.close()


def test_a_line_over_the_limit_is_refused_and_the_engine_serves_others(engine):
    client = connect(engine)
    client.send(b'{"type": "job", "id": "huge", "reference": {"data": "' + b"A" * (1024 * 1024 + 10))
    error = client.next(30)
    assert error["code"] == "too_large" and "1 MB" in error["message"]
    with pytest.raises((EOFError, ConnectionError)):
        client.next(10)
    other = connect(engine)
    other.send({"type": "ping"})
    assert other.next(10)["type"] == "pong"
    other.close()


# -- several clients, the queue -------------------------------------------------------------------
def test_two_clients_queue_order_priority_status_and_cancel_isolation(engine):
    a, b = connect(engine), connect(engine)
    a.send(remote_job("a-long", frames=4, steps=4))
    assert a.next(30)["type"] == "queued"
    a.until("accepted", "a-long")  # a-long runs
    b.send(remote_job("b-first", frames=2))
    queued_b = b.next(30)
    a.send(remote_job("a-urgent", frames=2, priority=5))
    queued_a = a.until("queued", "a-urgent")[-1]  # a also hears a-long's progress
    assert (queued_b["type"], queued_b["position"]) == ("queued", 1)
    assert (queued_a["type"], queued_a["position"]) == ("queued", 1)  # the higher priority goes ahead of b-first

    b.send({"type": "status"})
    status = b.next(30)
    assert status["type"] == "queue" and status["queued"] == 2 and status["clients"] >= 2
    assert "id" not in status["running"]  # another client's running job is not named
    assert [(j["id"], j["state"], j["position"]) for j in status["jobs"]] == [("b-first", "queued", 2)]

    b.send({"type": "cancel", "id": "a-long"})  # B cannot cancel A's job
    refused = b.next(30)
    assert refused["code"] == "not_found" and "only its own jobs" in refused["hint"]

    a_events = a.until("done", "a-urgent", timeout=180)
    b_events = b.until("done", "b-first")
    assert [m["type"] for m in a_events if m.get("id") == "a-long"][-1] == "done"  # not cancelled
    a_done = next(m for m in a_events if m["type"] == "done" and m["id"] == "a-urgent")
    assert a_done["frames"] == 2 and b_events[-1]["frames"] == 2
    assert len(frames_of(a_events)) >= 2 and len(frames_of(b_events)) == 2
    # The order they ran in: a-long, a-urgent, b-first (the job.json of each folder is written on start).
    started = {job: job_folder(engine, c.client, job).joinpath("job.json").stat().st_mtime_ns
               for c, job in ((a, "a-long"), (a, "a-urgent"), (b, "b-first"))}
    assert sorted(started, key=started.get) == ["a-long", "a-urgent", "b-first"]
    a.close(), b.close()


def test_a_queued_job_can_be_cancelled_by_its_owner(engine):
    a = connect(engine)
    a.send(remote_job("blocker", frames=4, steps=3))
    a.until("accepted", "blocker")
    a.send(remote_job("waiting", frames=2))
    assert a.until("queued", "waiting")[-1]["position"] == 1
    a.send({"type": "cancel", "id": "waiting"})
    cancelled = a.until("cancelled", "waiting")[-1]
    assert cancelled["frames_done"] == 0
    a.until("done", "blocker")
    a.close()


def test_a_full_queue_is_refused_with_a_clear_error(engine):
    a = connect(engine)
    ids = [f"fill-{i}" for i in range(8)]
    for job_id in ids:  # 8: this engine's --max-queued-per-client; the first runs long, the rest wait
        a.send(remote_job(job_id, frames=2, steps=200 if job_id == "fill-0" else 1))
        a.until("queued", job_id)
    a.send(remote_job("one-too-many", frames=2))
    refused = a.until("error", "one-too-many")[-1]
    assert refused["code"] == "queue_full" and "(8)" in refused["message"] and refused["hint"]
    for job_id in ids:
        a.send({"type": "cancel", "id": job_id})
    pending = set(ids)
    while pending:
        message = a.next(120)
        if message["type"] == "cancelled":
            pending.discard(message["id"])
    a.close()


def test_a_detached_job_finishes_and_is_collected_byte_identical(engine):
    a = connect(engine)
    a.send(remote_job("overnight", frames=4, steps=2))
    assert a.next(30)["type"] == "queued"
    a.close()  # the artist goes home
    folder = job_folder(engine, a.client, "overnight")
    deadline = time.monotonic() + 120
    while not (folder / "frame_00004.png").exists() or (folder / ".resume").exists():
        assert time.monotonic() < deadline, "the detached job did not finish"
        time.sleep(0.5)
    time.sleep(0.5)
    again = connect(engine, client=a.client)  # next morning, same client id
    again.send({"type": "attach", "id": "overnight", "have": {}})
    messages = again.until("done", "overnight")
    assert messages[0]["type"] == "queued" and messages[0]["attached"] is True
    frames = frames_of(messages)
    assert sorted(frames) == [1, 2, 3, 4]
    for index, data in frames.items():
        assert data == (folder / f"frame_{index:05d}.png").read_bytes()
    assert messages[-1]["computed_frames"] == 4
    stranger = connect(engine)  # another client cannot collect it
    stranger.send({"type": "attach", "id": "overnight"})
    assert stranger.next(30)["code"] == "not_found"
    again.close(), stranger.close()


def test_a_client_killed_mid_job_reconnects_and_nothing_is_recomputed(engine):
    a = connect(engine)
    job = remote_job("killed", frames=6, steps=1, decode_batch=1)
    a.send(job)
    got = {}
    while len(got) < 2:
        message = a.next(120)
        got.update(frames_of([message]))
    a.sock.shutdown(socket.SHUT_RDWR)  # the client dies mid-decode
    a.close()
    again = connect(engine, client=a.client)
    again.send(dict(job, have={str(i): sha(d) for i, d in got.items()}))  # the same job, with what it holds
    messages = again.until("done", "killed")
    assert messages[0]["type"] == "queued" and messages[0]["attached"] is True
    rest = frames_of(messages)
    assert not set(rest) & set(got), "frames the client had were sent again"
    assert sorted({**got, **rest}) == [1, 2, 3, 4, 5, 6]
    assert messages[-1]["computed_frames"] == 6  # each frame decoded once: nothing recomputed
    folder = job_folder(engine, a.client, "killed")
    for index, data in {**got, **rest}.items():
        assert data == (folder / f"frame_{index:05d}.png").read_bytes()
    again.close()


# -- idle and half-written connections ------------------------------------------------------------
def test_200_idle_and_half_written_connections_do_not_block_a_real_client(engine):
    opened = time.monotonic()
    idle = open_connections(engine.port, 100, half_written=False)
    half = open_connections(engine.port, 100, half_written=True)
    try:
        extra = open_connections(engine.port, 8, half_written=False)  # 208 > --max-connections 205
        answers = []
        for sock in extra:  # read them all before closing any (a closed one frees a place)
            sock.settimeout(10)
            answers.append(sock.recv(65536))
        for sock in extra:
            sock.close()
        refused = [a for a in answers if b'"too_many_connections"' in a]
        assert refused and b"205 connections open" in refused[0], answers
        started = time.monotonic()
        client = connect(engine)
        assert client.hello["type"] == "hello"
        client.send(remote_job("among-idlers", frames=2))
        done = client.until("done", "among-idlers", timeout=120)
        elapsed = time.monotonic() - started
        assert len(frames_of(done)) == 2
        print(f"a real client among 200 idle/half-written connections: authenticated and ran a 2-frame job in {elapsed:.1f} s")
        # The engine drops the idlers after --auth-timeout (20 s) with an error saying why.
        idle[0].settimeout(60)
        data = idle[0].recv(65536)
        data += idle[0].recv(65536)
        assert b'"code": "auth"' in data and b"No `auth` message within 20 s" in data
        assert time.monotonic() - opened > 19
        half[0].settimeout(60)
        assert b'"code": "auth"' in half[0].recv(65536) + half[0].recv(65536)
        client.close()
    finally:
        for sock in idle + half:
            sock.close()


def test_the_engine_keeps_serving_after_all_that(engine):
    assert engine.proc.poll() is None
    client = connect(engine)
    client.send({"type": "status"})
    status = client.next(30)
    assert status["type"] == "queue" and status["running"] is None and status["queued"] == 0
    client.close()
    assert os.path.isdir(engine.work_root / "jobs")
