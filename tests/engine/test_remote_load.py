"""A bounded loopback load test of the remote engine: 20 jobs from 4 clients at once (random-tiny,
32x32, 1 step, 2 frames each), every frame accounted for, the engine's RSS growth reported."""

from __future__ import annotations

import threading
import time

import pytest

from remote_helpers import RawClient, RemoteEngineProcess, frames_of, remote_job

pytestmark = pytest.mark.slow  # about a minute on 2 busy cores

CLIENTS, JOBS_PER_CLIENT, FRAMES = 4, 5, 2


def test_20_jobs_from_4_clients_no_frame_lost_and_rss_growth_reported(tmp_path):
    engine = RemoteEngineProcess(tmp_path / "work", "--keep-hours", "0.003")  # uncollected jobs go after 10.8 s
    try:
        warm = RawClient(engine.port, engine.token)
        warm.send(remote_job("warm-up", frames=FRAMES, seed=999))
        warm.until("done", "warm-up")
        warm.close()
        rss_before = engine.rss_kb()
        results: dict[str, dict] = {}
        errors: list[str] = []

        def client_run(n: int) -> None:
            try:
                client = RawClient(engine.port, engine.token)
                ids = [f"c{n}-job{j}" for j in range(JOBS_PER_CLIENT)]
                for j, job_id in enumerate(ids):
                    client.send(remote_job(job_id, frames=FRAMES, seed=100 * n + j))
                pending, messages = set(ids), []
                while pending:
                    message = client.next(300)
                    messages.append(message)
                    if message["type"] in ("done", "error", "cancelled"):
                        pending.discard(message.get("id"))
                        if message["type"] != "done":
                            errors.append(str(message))
                for job_id in ids:
                    results[job_id] = {"frames": frames_of([m for m in messages if m.get("id") == job_id]),
                                       "queued": next(m for m in messages if m["type"] == "queued" and m["id"] == job_id)}
                client.close()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(f"client {n}: {exc!r}")

        started = time.monotonic()
        threads = [threading.Thread(target=client_run, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        elapsed = time.monotonic() - started
        rss_after = engine.rss_kb()
        assert not errors, errors
        assert len(results) == CLIENTS * JOBS_PER_CLIENT
        lost = [(job_id, sorted(r["frames"])) for job_id, r in results.items() if sorted(r["frames"]) != list(range(1, FRAMES + 1))]
        assert not lost, lost
        assert max(r["queued"]["position"] for r in results.values()) >= 10  # they really queued up
        growth = (rss_after - rss_before) / 1024
        print(f"\nload: {len(results)} jobs from {CLIENTS} clients, {len(results) * FRAMES} frames, none lost, {elapsed:.1f} s "
              f"({60 * len(results) / elapsed:.1f} jobs/min); engine RSS {rss_before / 1024:.0f} MB -> {rss_after / 1024:.0f} MB "
              f"({growth:+.1f} MB over the 20 jobs)")
        assert growth < 200, f"RSS grew {growth:.0f} MB over 20 tiny jobs"

        # Finished jobs nobody touches are removed after the keep time: folders and records.
        assert list((engine.work_root / "jobs").iterdir())  # (the warm-up job may be gone already)
        deadline = time.monotonic() + 60
        while list((engine.work_root / "jobs").iterdir()):
            assert time.monotonic() < deadline, "finished jobs were not cleaned up"
            time.sleep(1)
        late = RawClient(engine.port, engine.token)
        late.send({"type": "attach", "id": "c0-job0"})
        assert late.next(30)["code"] == "not_found"
        late.close()
    finally:
        engine.stop()
