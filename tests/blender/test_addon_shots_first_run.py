"""First-run friction found by trying the add-on as a new user: the engine set-up says something
every few seconds, keypoint files and maps get the umask's permissions (not mkstemp's 0600), and the
test summary shows why tests were skipped."""

import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from _addon_helpers import ROOT


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o027])
def test_maps_and_keypoint_files_get_the_umasks_permissions(tmp_path, umask):
    from blender_addon.contract import png

    old = os.umask(umask)
    try:
        png.write_png(tmp_path / "pose_00001.png", np.zeros((8, 8, 3), np.uint8))
        png.write_atomic(tmp_path / "keypoints.json", b"{}")
        (tmp_path / "frame_00001.png").write_bytes(b"")  # as any other new file (the engine's frames)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"pose_00001.png": 0o666 & ~umask, "keypoints.json": 0o666 & ~umask, "frame_00001.png": 0o666 & ~umask}


def test_a_silent_setup_step_still_says_how_long_it_has_run(tmp_path):
    """pip is silent while torch downloads: a stage line comes every few seconds with the time so
    far and the environment folder's size."""
    from blender_addon import runtime
    from blender_addon.engine_setup import _run

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "torch.so").write_bytes(b"x" * 3_000_000)
    status = runtime.BackgroundStatus()
    _run([sys.executable, "-c", "import time; print('Collecting torch', flush=True); time.sleep(1.6)"], status, "Installing torch", tmp_path, every=0.4)
    assert status.lines[0].startswith("$ ") and status.lines[1] == "Collecting torch"
    stages = [line for line in status.lines if line.startswith("Installing torch: ")]
    assert len(stages) >= 2, status.lines
    assert re.fullmatch(rf"Installing torch: \d+ s so far, 3 MB in {re.escape(str(tmp_path))}", stages[-1])


def test_the_test_summary_lists_skip_reasons(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite tests="3" failures="0" errors="0" skipped="2">'
        '<testcase classname="tests.engine.test_gpu" name="test_fp16"><skipped message="needs a CUDA device">...</skipped></testcase>'
        '<testcase classname="tests.engine.test_gpu" name="test_bf16"><skipped message="needs a CUDA device"/></testcase>'
        '<testcase classname="tests.engine.test_x" name="test_ok"/></testsuite></testsuites>')
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize_junit.py"), str(report)], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "skipped 2: needs a CUDA device (tests.engine.test_gpu.test_fp16, tests.engine.test_gpu.test_bf16)",
        "total: 1 passed, 0 failed, 2 skipped",
    ]
