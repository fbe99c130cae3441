"""Window parallelism without Ray: `aa_engine animate` as two ranks of a torch.distributed group
(what `torchrun --nproc-per-node 2 -m aa_engine animate` starts: RANK, WORLD_SIZE, LOCAL_RANK; two
CPU ranks over gloo on the loopback interface, meeting through a file rather than torchrun's TCP
store, which would listen on every interface) writes the same frames, byte for byte, as one
`animate` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def animate(out: Path, poses: Path, **env) -> subprocess.Popen:
    argv = [sys.executable, "-m", "aa_engine", "animate", "--weights", "random-tiny", "--device", "cpu", "--reference",
            str(EXAMPLES / "reference.png"), "--poses", str(poses), "--out", str(out), "--no-video",
            "--width", "32", "--height", "32", "--steps", "2", "--context-frames", "4", "--context-overlap", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", **env}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    return process.returncode, err


def test_two_ranks_equal_one_process(tmp_path):
    poses = tmp_path / "poses"
    poses.mkdir()
    sources = sorted((EXAMPLES / "poses").glob("*.png"))
    for i in range(10):  # 3 windows of 4 frames: rank 0 takes 2, rank 1 takes 1
        (poses / f"pose_{i:04d}.png").write_bytes(sources[i % len(sources)].read_bytes())
    code, err = finish(animate(tmp_path / "single", poses))
    assert code == 0, err[-3000:]
    group = {"WORLD_SIZE": "2", "AA_DIST_INIT_METHOD": (tmp_path / "rendezvous").as_uri()}
    ranks = [animate(tmp_path / "split", poses, RANK=str(r), LOCAL_RANK=str(r), **group) for r in (0, 1)]
    results = [finish(p) for p in ranks]
    assert [code for code, _ in results] == [0, 0], "\n".join(err[-2000:] for _, err in results)
    assert "rank 1 served 2 denoising steps" in results[1][1]
    names = [f"frame_{i:05d}.png" for i in range(1, 11)]
    assert [(tmp_path / "split" / n).read_bytes() for n in names] == [(tmp_path / "single" / n).read_bytes() for n in names]
