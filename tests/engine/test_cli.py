"""`python -m aa_engine animate` and `info` as a user runs them: real subprocesses, real files."""

import hashlib
import subprocess
import sys

import pytest
from PIL import Image

from conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.slow


def _animate(out, *extra, poses=None):
    cmd = [sys.executable, "-m", "aa_engine", "animate", "--weights", "random-tiny", "--reference", str(EXAMPLES / "reference.png"),
           "--poses", str(poses or EXAMPLES / "poses"), "--out", str(out), "--steps", "2", "--width", "64", "--height", "64", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _digests(folder):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("frame_*.png"))]


def test_animate_writes_one_png_per_pose_and_is_seeded(tmp_path):
    poses = tmp_path / "poses"
    poses.mkdir()
    for path in sorted((EXAMPLES / "poses").glob("*.png"))[:10]:
        (poses / path.name).write_bytes(path.read_bytes())
    runs = {name: _animate(tmp_path / name, "--seed", str(seed), poses=poses) for name, seed in (("a", 42), ("b", 42), ("c", 43))}
    for run in runs.values():
        assert run.returncode == 0, run.stderr
    frames = sorted((tmp_path / "a").glob("frame_*.png"))
    assert [p.name for p in frames] == [f"frame_{i:05d}.png" for i in range(1, 11)]
    assert all(Image.open(p).size == (64, 64) for p in frames)
    assert (tmp_path / "a" / "video.mp4").stat().st_size > 0
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert all(x != y for x, y in zip(_digests(tmp_path / "a"), _digests(tmp_path / "c")))


def test_animate_errors_are_two_readable_lines_not_a_traceback(tmp_path):
    run = _animate(tmp_path / "o", "--width", "65")
    assert run.returncode == 2
    assert "error: 'width' must be a multiple of 8 (got 65): use 64 or 72." in run.stderr and "hint:" in run.stderr
    assert "Traceback" not in run.stderr
    run = _animate(tmp_path / "o", poses=tmp_path / "nothing-here")
    assert run.returncode == 2 and "neither a folder of maps nor a video" in run.stderr


def test_info_describes_a_release_folder(tmp_path):
    from aa_engine.weights import load_model, save_moore_layout

    model, _ = load_model("random-tiny")
    root = save_moore_layout(model, tmp_path / "pretrained_weights")
    (root / "motion_module.pth").unlink()
    run = subprocess.run([sys.executable, "-m", "aa_engine", "info", "--weights", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "missing:  motion_module.pth" in run.stdout
    assert run.returncode == 2 and "incomplete: missing motion_module.pth" in run.stderr
    run = subprocess.run([sys.executable, "-m", "aa_engine", "info", "--weights", "random-tiny"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "of which motion modules" in run.stdout and "device:   cpu" in run.stdout


def test_memory_options_reach_the_pipeline_and_keep_the_frames(tmp_path):
    """--offload-reference / --cfg-sequential change where and how the work runs, not the result."""
    a = _animate(tmp_path / "a")
    b = _animate(tmp_path / "b", "--offload-reference", "--cfg-sequential")
    assert a.returncode == 0 and b.returncode == 0, b.stderr
    import numpy as np
    from PIL import Image

    for frame in sorted((tmp_path / "a").glob("frame_*.png")):
        x = np.asarray(Image.open(frame), dtype=np.int16)
        y = np.asarray(Image.open(tmp_path / "b" / frame.name), dtype=np.int16)
        assert np.abs(x - y).max() <= 1, frame.name
