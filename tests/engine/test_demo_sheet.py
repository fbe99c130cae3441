"""The demo's contact sheet: reference, skeleton maps drawn from the shot's track, frames."""

import numpy as np
import pytest
from PIL import Image

from aa_contract.keypoints import FrameKeypoints, KeypointTrack, write_track
from aa_engine.evaluation.demo_sheet import demo_sheet, main


def _version(folder, frames=5, size=(16, 24)):
    w, h = size
    rng = np.random.default_rng(0)
    (folder / "frames").mkdir(parents=True)
    (folder / "poses").mkdir()
    for i in range(frames):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(folder / "frames" / f"frame_{i + 1:05d}.png")
    Image.fromarray(rng.integers(0, 255, (2 * h, 2 * w, 3), dtype=np.uint8)).save(folder / "reference.png")
    body = lambda i: np.column_stack([rng.uniform(4, 2 * w - 4, 18), rng.uniform(4, 2 * h - 4, 18), np.ones(18)])  # noqa: E731
    write_track(KeypointTrack(2 * w, 2 * h, 24.0, [FrameKeypoints(10 + i, body(i)) for i in range(frames)]), folder / "poses" / "keypoints.json")
    return folder


def test_sheet_shows_reference_maps_at_the_frames_size_and_evenly_spaced_frames(tmp_path):
    version = _version(tmp_path / "v001")
    sheet = np.asarray(demo_sheet(version, count=3, scale=1))
    # 80-px label strip, then 4 tiles of 16 + 2 px gap; 2 rows of 24 + 2
    assert sheet.shape == (2 * 26, 80 + 4 * 18, 3)
    frames_row = sheet[26:50]
    assert [int(frames_row[0, 80 + c * 18, 0]) for c in (1, 2, 3)] == [0, 80, 160]  # frames 1, 3 and 5
    maps_row = sheet[:24]
    assert maps_row[:, 80 + 18: 80 + 34].any(), "a skeleton map is drawn at the frames' size"


def test_sheet_of_a_version_without_frames_says_what_to_do(tmp_path, capsys):
    (tmp_path / "v001" / "frames").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="render the shot first"):
        demo_sheet(tmp_path / "v001")
    main([str(_version(tmp_path / "v002")), str(tmp_path / "sheet.png")])
    assert Image.open(tmp_path / "sheet.png").size[0] > 0
