"""The engine draws a job's keypoint track with OpenCV: pixel-identical to the contract's numpy
drawing (which tests/contract/test_draw.py holds to controlnet-aux's DWPose drawing), and a job
with a track gives the same frames as the same job given the maps that track draws."""

import numpy as np
import pytest
from PIL import Image

from aa_contract.draw import draw_keypoints
from aa_contract.keypoints import FrameKeypoints, KeypointTrack, write_track
from aa_contract.png import write_png
from aa_engine.data.pose_maps import draw_keypoints_cv2

from conftest import EXAMPLES


def _frame(rng, width, height, index=1, hands=True, face=True):
    body = np.column_stack([rng.uniform(-0.1, 1.1, 18) * width, rng.uniform(-0.1, 1.1, 18) * height,
                            (rng.random(18) > 0.15).astype(float)])
    if rng.random() < 0.5:  # a compact, plausible skeleton
        centre = rng.uniform(0.3, 0.7, 2) * [width, height]
        body[:, :2] = centre + rng.normal(0, 0.12, (18, 2)) * [width, height]
    body[rng.random(18) < 0.05] = (np.nan, np.nan, 0.0)
    h = f = None
    if hands:
        centre = rng.uniform(0.2, 0.8, (2, 1, 2)) * [width, height]
        h = np.concatenate([centre + rng.normal(0, 0.05, (2, 21, 2)) * [width, height], (rng.random((2, 21, 1)) > 0.1).astype(float)], -1)
    if face:
        f = np.column_stack([rng.uniform(0.3, 0.7, (68, 2)) * [width, height], (rng.random(68) > 0.1).astype(float)])
    return FrameKeypoints(index, body, h, f)


@pytest.mark.parametrize("width, height, seed", [(512, 768, 0), (64, 96, 1), (100, 72, 2)])
def test_opencv_drawing_equals_the_numpy_drawing(width, height, seed):
    rng = np.random.default_rng(seed)
    for trial in range(60):
        frame = _frame(rng, width, height, hands=trial % 2 == 0, face=trial % 3 == 0)
        ours, numpy_drawn = draw_keypoints_cv2(width, height, frame), draw_keypoints(width, height, frame)
        differing = np.argwhere((ours != numpy_drawn).any(axis=-1))
        assert not len(differing), f"trial {trial}: {len(differing)} pixels differ, first at {tuple(differing[0])}"


def test_a_keypoints_job_gives_the_frames_of_the_maps_it_draws(tmp_path):
    from aa_engine.config import GenerationConfig
    from aa_engine.jobs import JobSpec, run_job
    from aa_engine.pipeline import AnimateAnyonePipeline
    from aa_engine.weights import load_model

    rng = np.random.default_rng(7)
    track = KeypointTrack(64, 64, 24.0, [_frame(rng, 64, 64, i + 1, hands=False, face=False) for i in range(6)])
    write_track(track, tmp_path / "keypoints.json")
    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(len(track.frames)):
        write_png(maps / f"pose_{i + 1:05d}.png", track.draw(i))
    model, info = load_model("random-tiny")
    pipe = AnimateAnyonePipeline(model)
    config = GenerationConfig(width=64, height=64, steps=2, context_frames=4, context_overlap=1)
    from aa_contract.keypoints import read_track

    events = []
    for name, poses in (("maps", maps), ("track", read_track(tmp_path / "keypoints.json"))):
        # One job id for both: the frames' PNG text chunks record it (and the fingerprint, which must match).
        run_job(pipe, info.identity, JobSpec("shot", EXAMPLES / "reference.png", poses, tmp_path / name, config, video=False),
                lambda kind, **fields: events.append((kind, fields)))
    for i in range(6):
        a = (tmp_path / "maps" / f"frame_{i + 1:05d}.png").read_bytes()
        b = (tmp_path / "track" / f"frame_{i + 1:05d}.png").read_bytes()
        assert a == b, f"frame {i + 1}"
    # The same pixels are the same job: one fingerprint for both forms of the input.
    import json

    assert json.loads((tmp_path / "maps/job.json").read_text())["fingerprint"] == json.loads((tmp_path / "track/job.json").read_text())["fingerprint"]


def test_a_track_at_another_size_is_drawn_at_the_jobs_size():
    from aa_engine.jobs import load_poses

    rng = np.random.default_rng(3)
    track = KeypointTrack(128, 192, 24.0, [_frame(rng, 128, 192, hands=False, face=False)])
    images, _ = load_poses(track, (64, 96))
    assert images[0].size == (64, 96)
    expected = draw_keypoints(64, 96, track.scaled_to(64, 96).frames[0])
    assert np.array_equal(np.asarray(images[0]), expected)  # joints keep their 4-px radius, not halved
    assert isinstance(images[0], Image.Image)
