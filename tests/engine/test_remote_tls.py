"""The remote engine over TLS (stdlib ssl, a self-signed certificate made with openssl, as
docs/remote.md tells a studio): the raw protocol and the add-on's client, trusting the certificate
as a CA file or by its pinned SHA-256 fingerprint; untrusted and plain-text clients are refused."""

from __future__ import annotations

import hashlib
import shutil
import ssl

import pytest

from remote_helpers import RawClient, RemoteEngineProcess, frames_of, remote_job, self_signed_cert

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


@pytest.fixture(scope="module")
def tls_engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(folder)
    process = RemoteEngineProcess(folder / "work", "--tls-cert", str(cert), "--tls-key", str(key))
    process.cert = cert
    yield process
    process.stop()


def fingerprint(cert) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())  # as `openssl x509 -fingerprint -sha256` prints it


def settings(engine, **kw):
    from blender_addon.engine_client import EngineSettings

    return EngineSettings(address=f"127.0.0.1:{engine.port}", token=engine.token, client_id="tls-test-client-1", **kw)


def test_a_job_over_tls_trusting_the_certificate(tls_engine):
    context = ssl.create_default_context(cafile=str(tls_engine.cert))
    client = RawClient(tls_engine.port, tls_engine.token, tls=context)
    assert client.greeting["tls"] is True and client.hello["type"] == "hello"
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    client.send(remote_job("over-tls", frames=2))
    assert sorted(frames_of(client.until("done", "over-tls"))) == [1, 2]
    client.close()


def test_the_addon_client_trusts_a_ca_file_or_a_pinned_fingerprint(tls_engine):
    from blender_addon.engine_client import describe_remote_engine

    lines = describe_remote_engine(settings(tls_engine, tls_ca=str(tls_engine.cert)))
    assert "(TLS TLSv1." in lines[0] and "Model random-tiny, weights random-tiny" in lines
    lines = describe_remote_engine(settings(tls_engine, tls_fingerprint=fingerprint(tls_engine.cert)))
    assert "(TLS TLSv1." in lines[0]


def test_untrusted_wrongly_pinned_and_plain_clients_are_refused(tls_engine):
    from blender_addon.engine_client import RemoteEngine
    from blender_addon.errors import EngineStartFailed

    with pytest.raises(EngineStartFailed, match="TLS certificate is not trusted"):
        RemoteEngine(settings(tls_engine, tls=True)).start()  # the system's CAs do not know a self-signed certificate
    with pytest.raises(EngineStartFailed, match="not the pinned") as info:
        RemoteEngine(settings(tls_engine, tls_fingerprint="00" * 32)).start()
    assert "pin the new fingerprint" in info.value.hint
    with pytest.raises(EngineStartFailed) as info:
        RemoteEngine(settings(tls_engine)).start()  # no TLS against a TLS engine
    assert "TLS" in info.value.message + info.value.hint
    assert tls_engine.proc.poll() is None


def _local_job(tmp_path, job_id: str, **extra) -> dict:
    from remote_helpers import EXAMPLES

    poses = sorted(str(p) for p in (EXAMPLES / "poses").glob("*.png"))[:3]
    return {"type": "job", "id": job_id, "reference": str(EXAMPLES / "reference.png"), "poses": poses, "output": str(tmp_path / "frames"),
            "width": 32, "height": 32, "steps": 1, "context_frames": 3, "context_overlap": 1, "video": False, **extra}


def test_render_task_cancel_and_a_planted_local_symlink_through_the_remote_engine(tls_engine, tmp_path):
    """What the render button drives (RenderTask) over TLS: cancel behaves as locally, and a frame
    path in the local output folder that is a symlink is replaced, never written through."""
    from blender_addon.engine_client import RemoteEngine
    from blender_addon.render_task import RenderTask

    client = RemoteEngine(settings(tls_engine, tls_ca=str(tls_engine.cert))).start()
    try:
        task = RenderTask(client, _local_job(tmp_path / "cancel", "long-1", steps=200))
        while task.progress.stage != "denoise" and not task.progress.finished:
            task.pump(timeout=0.5)
        task.cancel()
        progress = task.run_blocking(poll_s=0.2)
        assert progress.state == "cancelled" and progress.message == "Cancelled. 0 frame(s) on disk are kept; render again to resume."

        outside = tmp_path / "outside.png"
        outside.write_bytes(b"not a frame")
        frames = tmp_path / "linked" / "frames"
        frames.mkdir(parents=True)
        (frames / "frame_00001.png").symlink_to(outside)
        task = RenderTask(client, _local_job(tmp_path / "linked", "linked-1"))
        progress = task.run_blocking(poll_s=0.2)
        assert progress.state == "done", progress.message
        assert outside.read_bytes() == b"not a frame"
        assert not (frames / "frame_00001.png").is_symlink() and (frames / "frame_00001.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(progress.frames) == 3
    finally:
        client.shutdown()
