"""Issue 10: writes into the output folder cannot be redirected (the engine may run as root on
shared storage), temp files are unpredictable and cleaned up, resume trusts only real frames.

On 51ddfb4 the planted symlinks below got victim files outside the folder truncated or
overwritten, a `.resume` symlink made the engine delete a foreign state.pt, a symlinked frame
counted as finished, and a job refused late left a job.json behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled, InvalidSetting, OutputError
from aa_engine.job_folder import TEMP_PATTERN, JobFolder
from aa_engine.jobs import JobSpec, run_job
from aa_engine.pipeline import AnimateAnyonePipeline

from conftest import EXAMPLES, ROOT

POSES = sorted((EXAMPLES / "poses").glob("*.png"))[:2]


@pytest.fixture(scope="module")
def pipe():
    from aa_engine.weights import load_model

    return AnimateAnyonePipeline(load_model("random-tiny")[0])


def _spec(out: Path, video: bool = False, **knobs) -> JobSpec:
    knobs = {"width": 24, "height": 24, "steps": 2, **knobs}
    return JobSpec("t", EXAMPLES / "reference.png", list(POSES), out, GenerationConfig(**knobs), video=video)


def _run(pipe, spec, cancel_after_step=None) -> list:
    events = []

    def should_cancel():
        steps = [f["step"] for k, f in events if k == "progress" and f["stage"] == "denoise"]
        return cancel_after_step is not None and bool(steps) and max(steps) >= cancel_after_step

    run_job(pipe, "test-weights", spec, lambda kind, **fields: events.append((kind, fields)), should_cancel)
    return events


class Victims:
    """Files and a folder outside the output folder that planted symlinks point at."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.files: dict[Path, bytes] = {}
        self.folder = root / "foreign_job"
        self.folder.mkdir()

    def file(self, name: str) -> Path:
        path = self.root / name
        content = f"victim {name}: must stay as it is\n".encode()
        path.write_bytes(content)
        self.files[path] = content
        return path

    def check_untouched(self) -> None:
        for path, content in self.files.items():
            assert path.is_file() and not path.is_symlink(), path
            assert path.read_bytes() == content, f"{path} was written through a symlink"
        assert sorted(p.name for p in self.root.iterdir()) == sorted([p.name for p in self.files] + ["foreign_job"])


def _plant(folder: Path, name: str, target: Path) -> None:
    (folder / name).symlink_to(target)


def _predicted_temp_names(pid: int) -> list[str]:
    """The temp names 51ddfb4 used (predictable from the pid), and new-style names a guesser might try."""
    names = [f".write-test-{pid}", f".job.json.tmp-{pid}", f".video-{pid}.mp4"]
    names += [f".frame_{i:05d}.png.tmp-{pid}" for i in (1, 2)]
    from aa_engine.job_folder import _HOST

    for name in ("job.json", "frame_00001.png", "video.mp4", "state.pt", "write-test"):
        names.append(f".{name}.{_HOST}.{pid}.{'0' * 16}.tmp")
    return names


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def test_a_symlink_planted_at_every_path_the_engine_writes_leaves_its_target_untouched(pipe, tmp_path):
    victims = Victims(tmp_path / "victims")
    out = tmp_path / "out"
    out.mkdir()
    planted = ["frame_00001.png", "frame_00002.png", "job.json", "video.mp4"] + _predicted_temp_names(os.getpid())
    for name in planted:
        _plant(out, name, victims.file(name.strip(".") + ".victim"))
    # .resume -> a foreign job's folder holding its own checkpoint.
    foreign_state = victims.folder / "state.pt"
    foreign_state.write_bytes(b"foreign checkpoint")
    (out / ".resume").symlink_to(victims.folder, target_is_directory=True)

    _run(pipe, _spec(out, video=True))

    victims.check_untouched()
    assert foreign_state.read_bytes() == b"foreign checkpoint"  # 51ddfb4 deleted it
    for name in ("frame_00001.png", "frame_00002.png", "job.json", "video.mp4"):
        assert _regular(out / name), name
    assert Image.open(out / "frame_00001.png").size == (24, 24)
    assert not (out / ".resume").exists()  # the symlink is gone, never entered; no checkpoint left after the job
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name], sorted(os.listdir(out))


def test_a_symlink_at_the_checkpoint_path_is_replaced_not_written_through(pipe, tmp_path):
    victims = Victims(tmp_path / "victims")
    out = tmp_path / "out"
    (out / ".resume").mkdir(parents=True)
    _plant(out / ".resume", "state.pt", victims.file("state.victim"))
    for name in _predicted_temp_names(os.getpid()):
        _plant(out / ".resume", name, victims.file("resume" + name + ".victim"))
    with pytest.raises(Cancelled):
        _run(pipe, _spec(out, steps=3), cancel_after_step=1)
    victims.check_untouched()
    assert _regular(out / ".resume" / "state.pt")  # the checkpoint is a real file now
    _run(pipe, _spec(out, steps=3))  # and resumes
    victims.check_untouched()


def test_files_keep_the_umask_permissions(pipe, tmp_path):
    old = os.umask(0o027)
    try:
        out = tmp_path / "out"
        with pytest.raises(Cancelled):
            _run(pipe, _spec(out, steps=3), cancel_after_step=1)
        assert (out / ".resume" / "state.pt").stat().st_mode & 0o777 == 0o640
        assert (out / ".resume").stat().st_mode & 0o777 == 0o750
        _run(pipe, _spec(out, steps=3, video=True))
        for name in ("frame_00001.png", "job.json", "video.mp4"):
            assert (out / name).stat().st_mode & 0o777 == 0o640, name
    finally:
        os.umask(old)
    os.umask(0o002)
    try:
        _run(pipe, _spec(tmp_path / "group", steps=1))
        assert (tmp_path / "group" / "frame_00001.png").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_temp_names_are_unpredictable_and_exclusive(tmp_path):
    folder = JobFolder(tmp_path / "out")
    names = {folder._create_temp("frame_00001.png")[1] for _ in range(50)}
    assert len(names) == 50 and all(TEMP_PATTERN.fullmatch(n) for n in names)


def test_only_regular_frames_that_decode_count_on_resume(pipe, tmp_path):
    out = tmp_path / "out"
    _run(pipe, _spec(out))
    before = (out / "frame_00002.png").read_bytes()
    elsewhere = tmp_path / "elsewhere.png"
    Image.new("RGB", (24, 24), "red").save(elsewhere)
    (out / "frame_00001.png").unlink()
    (out / "frame_00001.png").symlink_to(elsewhere)  # a planted frame: not ours
    folder = JobFolder(out)
    assert folder.finished_frames(2, (24, 24)) == {1}
    (out / "frame_00002.png").write_bytes(before[: len(before) // 2])  # truncated: does not decode
    assert folder.finished_frames(2, (24, 24)) == set()
    Image.new("RGB", (32, 32)).save(out / "frame_00002.png")  # decodes, but at the wrong size
    assert folder.finished_frames(2, (24, 24)) == set()

    events = _run(pipe, _spec(out, video=True))
    assert next(f for k, f in events if k == "accepted")["resumed_frames"] == 0
    assert _regular(out / "frame_00001.png") and _regular(out / "frame_00002.png")
    assert (out / "frame_00002.png").read_bytes() == before
    assert Image.open(elsewhere).getpixel((0, 0)) == (255, 0, 0)
    assert _regular(out / "video.mp4")


def test_temp_files_of_a_killed_run_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "out"
    JobFolder(out)
    # A real process creates a temp file the way a frame write does, then dies before renaming it.
    script = ("import os, sys; from aa_engine.job_folder import JobFolder; f = JobFolder(sys.argv[1]); "
              "h, name = f._create_temp('frame_00001.png'); h.write(b'half a frame'); h.flush(); os._exit(9)")
    assert subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT).returncode == 9
    legacy = out / f".frame_00003.png.tmp-{_dead_pid()}"
    legacy.write_bytes(b"51ddfb4's temp name")
    live = out / f".job.json.other-host.1.{'a' * 16}.tmp"  # another machine's writer, fresh: left alone
    live.write_bytes(b"")
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert len(leftovers) == 3
    JobFolder(out)
    assert sorted(p.name for p in out.iterdir()) == [live.name]
    os.utime(live, (0, 0))  # an hour old: a leftover whoever wrote it
    JobFolder(out)
    assert not list(out.iterdir())


def _dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


def test_a_job_refused_late_leaves_no_folder_or_job_json(pipe, tmp_path):
    with pytest.raises(InvalidSetting, match="too small") as refused:
        _run(pipe, _spec(tmp_path / "small", width=16, height=16))  # valid settings, too small for this model
    assert refused.value.field == "width" and "24x24" in refused.value.hint
    assert not (tmp_path / "small").exists()
    with pytest.raises(InvalidSetting):
        _run(pipe, _spec(tmp_path / "window", context_frames=32, context_overlap=40))
    assert not (tmp_path / "window").exists()
    spec = _spec(tmp_path / "noref")
    spec.reference = tmp_path / "missing.png"
    with pytest.raises(Exception, match="does not exist"):
        _run(pipe, spec)
    assert not (tmp_path / "noref").exists()


def test_an_output_path_that_is_a_file_or_a_symlink_loop_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        JobFolder(tmp_path / "file")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(OutputError):
        JobFolder(tmp_path / "loop")


def test_a_folder_at_a_frame_name_is_an_output_error_not_a_crash(pipe, tmp_path):
    out = tmp_path / "out"
    (out / "frame_00001.png").mkdir(parents=True)
    with pytest.raises(OutputError, match="frame_00001.png"):
        _run(pipe, _spec(out, steps=1))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_frames_written_are_complete_pngs(pipe, tmp_path):
    _run(pipe, _spec(tmp_path / "out", steps=1))
    for i in (1, 2):
        assert np.asarray(Image.open(tmp_path / "out" / f"frame_{i:05d}.png")).shape == (24, 24, 3)
