"""The job runner: output folder, atomic frames, fingerprinted resume, input errors."""

import numpy as np
import pytest
from PIL import Image

from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled, InputError, OutputError
from aa_engine.jobs import JobSpec, run_job
from aa_engine.pipeline import AnimateAnyonePipeline

from conftest import EXAMPLES


def _spec(out, poses=None, **knobs):
    knobs = {"width": 64, "height": 64, "steps": 4, **knobs}
    return JobSpec("t", EXAMPLES / "reference.png", poses or EXAMPLES / "poses", out, GenerationConfig(**knobs), video=False)


def _run(pipe, spec, cancel_after_step=None):
    events = []

    def emit(kind, **fields):
        events.append((kind, fields))

    def should_cancel():
        steps = [f["step"] for k, f in events if k == "progress" and f["stage"] == "denoise"]
        return cancel_after_step is not None and bool(steps) and max(steps) >= cancel_after_step

    result = run_job(pipe, "test-weights", spec, emit, should_cancel)
    return result, events


def _read(folder, n):
    return [np.asarray(Image.open(folder / f"frame_{i:05d}.png")) for i in range(1, n + 1)]


@pytest.fixture
def pipe(tiny_model):
    return AnimateAnyonePipeline(tiny_model)


def test_frames_are_written_1_based_with_nothing_half_written(pipe, tmp_path):
    result, events = _run(pipe, _spec(tmp_path / "out"))
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(1, 17)] + ["job.json"]
    assert [f["index"] for k, f in events if k == "frame"] == list(range(1, 17))
    assert result["frames"] == 16


def test_cancelled_job_resumes_from_its_checkpoint_to_identical_frames(pipe, tmp_path):
    _run(pipe, _spec(tmp_path / "straight"))
    with pytest.raises(Cancelled):
        _run(pipe, _spec(tmp_path / "resumed"), cancel_after_step=2)
    assert (tmp_path / "resumed/.resume/state.pt").is_file()
    assert not list((tmp_path / "resumed").glob("frame_*.png"))
    _, events = _run(pipe, _spec(tmp_path / "resumed"))
    denoise_steps = [f["step"] for k, f in events if k == "progress" and f["stage"] == "denoise"]
    assert denoise_steps[0] == 2 and denoise_steps[-1] == 4  # steps 1-2 were not redone
    for a, b in zip(_read(tmp_path / "straight", 16), _read(tmp_path / "resumed", 16)):
        assert np.array_equal(a, b)
    assert not (tmp_path / "resumed/.resume").exists()


def test_rerun_of_a_finished_job_recomputes_nothing(pipe, tmp_path):
    _run(pipe, _spec(tmp_path / "out"))
    stamp = (tmp_path / "out/frame_00003.png").stat().st_mtime_ns
    _, events = _run(pipe, _spec(tmp_path / "out"))
    accepted = [fields for kind, fields in events if kind == "accepted"]
    assert [(a["frames"], a["resumed_frames"]) for a in accepted] == [(16, 16)]
    assert not [e for e in events if e[0] == "frame"]
    assert (tmp_path / "out/frame_00003.png").stat().st_mtime_ns == stamp


def test_missing_frames_of_a_finished_job_are_redone_alone(pipe, tmp_path):
    _run(pipe, _spec(tmp_path / "out"))
    before = _read(tmp_path / "out", 16)
    (tmp_path / "out/frame_00005.png").unlink()
    _, events = _run(pipe, _spec(tmp_path / "out"))  # no checkpoint left: denoises again, writes only frame 5
    assert [f["index"] for k, f in events if k == "frame"] == [5]
    assert np.array_equal(_read(tmp_path / "out", 16)[4], before[4])


def test_a_changed_setting_starts_afresh(pipe, tmp_path):
    _run(pipe, _spec(tmp_path / "out", poses=sorted((EXAMPLES / "poses").glob("*.png"))[:3]))
    _, events = _run(pipe, _spec(tmp_path / "out", poses=sorted((EXAMPLES / "poses").glob("*.png"))[:3], seed=7))
    assert [(f["frames"], f["resumed_frames"]) for k, f in events if k == "accepted"] == [(3, 0)]
    assert len([e for e in events if e[0] == "frame"]) == 3


def test_unwritable_output_folder_is_reported(pipe, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot be written"):
        _run(pipe, _spec(blocker / "out"))


def test_missing_or_broken_inputs_are_reported(pipe, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_job(pipe, "w", JobSpec("t", tmp_path / "nope.png", EXAMPLES / "poses", tmp_path / "o", GenerationConfig(width=64, height=64)), lambda *a, **k: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no PNG/JPG"):
        _run(pipe, _spec(tmp_path / "o", poses=tmp_path / "empty"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot be read"):
        run_job(pipe, "w", JobSpec("t", tmp_path / "bad.png", EXAMPLES / "poses", tmp_path / "o", GenerationConfig(width=64, height=64)), lambda *a, **k: None)


def test_a_pose_video_is_accepted(pipe, tmp_path):
    import imageio.v2 as imageio

    video = tmp_path / "poses.mp4"
    with imageio.get_writer(video, fps=8, macro_block_size=8) as writer:
        for path in sorted((EXAMPLES / "poses").glob("*.png"))[:5]:
            writer.append_data(np.asarray(Image.open(path).convert("RGB").resize((64, 64))))
    result, _ = _run(pipe, _spec(tmp_path / "out", poses=video, steps=1))
    assert result["frames"] == 5
