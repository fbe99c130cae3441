"""Faults on the remote engine: the engine killed mid-job and restarted on the same work root, and
the add-on's client (blender_addon.engine_client.RemoteEngine, no bpy needed) reconnecting by
itself. The output must equal an uninterrupted run byte for byte."""

from __future__ import annotations

import signal
import subprocess

import pytest

from remote_helpers import RawClient, RemoteEngineProcess, frames_of, remote_job, sha

pytestmark = pytest.mark.slow  # three engine starts


def _kill_during_denoise(engine: RemoteEngineProcess, client: RawClient, job_id: str, after_step: int) -> None:
    while True:
        message = client.next(120)
        if message["type"] == "progress" and message["stage"] == "denoise" and message["step"] >= after_step:
            break
    engine.proc.send_signal(signal.SIGKILL)
    engine.proc.wait(30)


def test_engine_killed_mid_job_and_restarted_resumes_from_its_checkpoint_byte_identical(tmp_path):
    work = tmp_path / "work"
    job = remote_job("shot", frames=4, steps=4)
    engine = RemoteEngineProcess(work)
    try:
        client = RawClient(engine.port, engine.token)
        client.send(job)
        _kill_during_denoise(engine, client, "shot", after_step=2)  # checkpoint after step 2 of 4 is on disk
        with pytest.raises((EOFError, ConnectionError, OSError)):
            client.next(10)
        client.close()
    finally:
        engine.kill()

    engine = RemoteEngineProcess(work)  # same work root, same token file
    try:
        again = RawClient(engine.port, engine.token, client=client.client)
        again.send({"type": "attach", "id": "shot"})  # the restarted engine does not know the job...
        assert again.next(30)["code"] == "not_found"
        again.send(job)  # ...so the client resends it: it resumes from the checkpoint
        messages = again.until("done", "shot")
        denoise = [m["step"] for m in messages if m["type"] == "progress" and m["stage"] == "denoise"]
        assert denoise[0] >= 2, f"denoising restarted from step {denoise[0]}, not from the checkpoint"
        resumed = frames_of(messages)
        assert sorted(resumed) == [1, 2, 3, 4]

        fresh = RawClient(engine.port, engine.token)  # the same job, uninterrupted, in another folder
        fresh.send(job)
        uninterrupted = frames_of(fresh.until("done", "shot"))
        assert {i: sha(d) for i, d in resumed.items()} == {i: sha(d) for i, d in uninterrupted.items()}
        print(f"engine killed at denoise step {denoise[0]}/4 and restarted: resumed there; 4 frames byte-identical to an uninterrupted run")
    finally:
        engine.stop()


def test_the_addon_client_reconnects_by_itself_when_the_engine_restarts(tmp_path):
    """RemoteEngine + RenderTask (what the render button drives): the engine dies mid-job, comes
    back on the same port; the client reconnects, resends, the job resumes; frames land locally."""
    from blender_addon.engine_client import EngineSettings, RemoteEngine
    from blender_addon.render_task import RenderTask

    from remote_helpers import EXAMPLES

    work = tmp_path / "work"
    engine = RemoteEngineProcess(work)
    port = engine.port
    local = tmp_path / "artist"
    poses = sorted(str(p) for p in (EXAMPLES / "poses").glob("*.png"))[:4]
    job = {"type": "job", "id": "shot-1", "reference": str(EXAMPLES / "reference.png"), "poses": poses, "output": str(local / "frames"),
           "width": 32, "height": 32, "steps": 4, "context_frames": 4, "context_overlap": 2, "video": False}
    settings = EngineSettings(address=f"127.0.0.1:{port}", token=engine.token, client_id="artist-laptop-0001")
    client = RemoteEngine(settings, reconnect_s=180).start()
    restarted = None
    try:
        task = RenderTask(client, job)
        while not (task.progress.stage == "denoise" and task.progress.step >= 2):
            task.pump(timeout=0.5)
            assert not task.progress.finished, task.progress.message
        engine.proc.send_signal(signal.SIGKILL)
        engine.proc.wait(30)
        restarted = RemoteEngineProcess(work, listen=f"127.0.0.1:{port}")
        progress = task.run_blocking(poll_s=0.5)
        assert progress.state == "done", progress.message
        assert [p.split("/")[-1] for p in progress.frames] == [f"frame_{i:05d}.png" for i in range(1, 5)]
        assert all(p.startswith(str(local)) for p in progress.frames)  # the frames are on the client's side
        assert not (work / "frames").exists() and not (local / "frames" / "job.json").exists()
    finally:
        client.shutdown()
        if restarted is not None:
            restarted.stop()
        engine.kill()


def test_listen_errors_are_clear_and_never_a_traceback(tmp_path):
    """A port in use, a non-loopback address without a token, a malformed address; and [::1]:0."""
    import socket
    import sys

    from remote_helpers import ROOT

    def serve(*args, timeout=60):
        return subprocess.run([sys.executable, "-m", "aa_engine", "serve", "--weights", "random-tiny", "--work-root", str(tmp_path / "w"), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = serve("--listen", f"127.0.0.1:{port}")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"error: Port {port} on 127.0.0.1 is already in use" in done.stderr and "hint: " in done.stderr

    done = serve("--listen", "0.0.0.0:0", "--no-token")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: Listening on 0.0.0.0 without a token" in done.stderr

    done = serve("--listen", "::1:7860")
    assert done.returncode == 2 and "goes in brackets" in done.stderr and "Traceback" not in done.stderr

    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        done = serve("--listen", "[::1]:0")
        assert done.returncode == 2 and "Traceback" not in done.stderr and "error: Cannot listen on ::1" in done.stderr
        return
    engine = RemoteEngineProcess(tmp_path / "w6", listen="[::1]:0")
    try:
        with socket.create_connection(("::1", engine.port), timeout=30) as sock:
            assert b"auth_required" in sock.recv(4096)
    finally:
        engine.stop()
