"""Window parallelism without Ray: `torchrun --nproc-per-node 2 -m aa_engine animate` (two CPU
ranks over gloo, on loopback) writes the same frames, byte for byte, as one `animate` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def animate(out: Path, poses: Path, *launcher: str) -> subprocess.CompletedProcess:
    argv = [*launcher, "-m", "aa_engine", "animate", "--weights", "random-tiny", "--device", "cpu", "--reference",
            str(EXAMPLES / "reference.png"), "--poses", str(poses), "--out", str(out), "--no-video",
            "--width", "32", "--height", "32", "--steps", "2", "--context-frames", "4", "--context-overlap", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    poses = tmp_path / "poses"
    poses.mkdir()
    sources = sorted((EXAMPLES / "poses").glob("*.png"))
    for i in range(10):  # 3 windows of 4 frames: rank 0 takes 2, rank 1 takes 1
        (poses / f"pose_{i:04d}.png").write_bytes(sources[i % len(sources)].read_bytes())
    single = animate(tmp_path / "single", poses, sys.executable)
    assert single.returncode == 0, single.stderr[-3000:]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    split = animate(tmp_path / "split", poses, *launcher)
    assert split.returncode == 0, split.stderr[-3000:]
    assert "rank 1 served 2 denoising steps" in split.stderr
    names = [f"frame_{i:05d}.png" for i in range(1, 11)]
    assert [(tmp_path / "split" / n).read_bytes() for n in names] == [(tmp_path / "single" / n).read_bytes() for n in names]
