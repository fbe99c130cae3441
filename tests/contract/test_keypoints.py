"""The keypoint track format (aa-keypoints/1): round trip, validation, redrawing maps without Blender."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aa_contract.draw import draw_pose_map
from aa_contract.errors import BadTrack
from aa_contract.keypoints import BODY_NAMES, FORMAT, FrameKeypoints, KeypointTrack, read_track, track_from_dict, write_track
from aa_contract.png import encode_png, write_png
from blender_addon.skeleton.errors import OutputNotWritable
from blender_addon.skeleton.track import draw_track

ROOT = Path(__file__).resolve().parents[2]


def _track(rng, frames=4, hands=False, face=False, width=96, height=128):
    out = []
    for i in range(frames):
        body = np.column_stack([rng.uniform(0, width, 18), rng.uniform(0, height, 18), np.ones(18)])
        body[3] = (np.nan, np.nan, 0.0)  # a missing elbow
        h = None
        if hands:
            h = np.concatenate([rng.uniform(1, 90, (2, 21, 2)), np.ones((2, 21, 1))], axis=2)
            h[0, 5] = (np.nan, np.nan, 0.0)  # a missing finger joint
        fc = np.column_stack([rng.uniform(1, 90, 68), rng.uniform(1, 120, 68), np.ones(68)]) if face else None
        out.append(FrameKeypoints(frame=10 + i, body=body, hands=h, face=fc))
    return KeypointTrack(width=width, height=height, fps=12.5, frames=out, source={"armature": "rig", "bone_map": "rigify"})


def test_track_round_trips_through_json(tmp_path):
    track = _track(np.random.default_rng(0), hands=True, face=True)
    path = write_track(track, tmp_path / "keypoints.json")
    back = read_track(path)
    assert (back.width, back.height, back.fps, back.frame_start, back.frame_end) == (96, 128, 12.5, 10, 13)
    assert back.source == {"armature": "rig", "bone_map": "rigify"}
    for a, b in zip(track.frames, back.frames):
        assert a.frame == b.frame
        np.testing.assert_allclose(b.body, a.body, atol=5e-4, equal_nan=True)
        np.testing.assert_allclose(b.hands, a.hands, atol=5e-4, equal_nan=True)
        np.testing.assert_allclose(b.face, a.face, atol=5e-4)


def test_missing_points_are_written_as_null(tmp_path):
    track = _track(np.random.default_rng(1))
    data = json.loads(write_track(track, tmp_path / "k.json").read_text())
    assert data["format"] == FORMAT and data["body_names"] == list(BODY_NAMES)
    assert data["frames"][0]["body"][3] is None
    assert len(data["frames"][0]["body"][0]) == 3
    assert "hands" not in data["frames"][0] and "face" not in data["frames"][0]


def test_a_hand_written_track_is_read_with_default_confidence():
    body = [[10, 20]] * 18
    body[0] = None
    track = track_from_dict({"format": FORMAT, "width": 64, "height": 64, "frames": [{"frame": 1, "body": body}]})
    assert track.fps == 24.0
    assert np.isnan(track.frames[0].body[0, 0]) and track.frames[0].body[0, 2] == 0
    assert tuple(track.frames[0].body[1]) == (10.0, 20.0, 1.0)


@pytest.mark.parametrize("change, words", [
    ({"format": "openpose"}, "format"),
    ({"width": 0}, "width"),
    ({"height": "768"}, "width"),
    ({"fps": -1}, "fps"),
    ({"frames": []}, "frames"),
    ({"frames": [{"frame": 1, "body": [[1, 2, 1]] * 17}]}, "frames[0].body"),
    ({"frames": [{"frame": 1, "body": [[1, 2, 1]] * 17 + [["a", 2, 1]]}]}, "frames[0].body[17]"),
    ({"frames": [{"frame": 2, "body": [None] * 18}, {"frame": 2, "body": [None] * 18}]}, "increase"),
    ({"frames": [{"frame": 1, "body": [None] * 18, "face": [None] * 5}]}, "face"),
    ({"body_names": ["nose"]}, "body_names"),
])
def test_bad_tracks_name_the_faulty_field(change, words):
    data = {"format": FORMAT, "width": 64, "height": 64, "frames": [{"frame": 1, "body": [None] * 18}]}
    data.update(change)
    with pytest.raises(BadTrack) as info:
        track_from_dict(data)
    assert words in info.value.message and info.value.hint


def test_unreadable_track_files_give_clear_errors(tmp_path):
    with pytest.raises(BadTrack, match="does not exist"):
        read_track(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "aa-keypoints/1",\n "width": 5,,}')
    with pytest.raises(BadTrack, match="line 2"):
        read_track(bad)


def test_png_writer_output_decodes_to_the_same_pixels(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    write_png(tmp_path / "x.png", image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png").convert("RGB")), image)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError):
        encode_png(image.astype(np.float32))


def test_drawing_a_track_writes_numbered_maps_equal_to_the_drawing(tmp_path):
    track = _track(np.random.default_rng(3), frames=3, hands=True)
    paths = draw_track(track, tmp_path / "maps", hands=True, face=False)
    assert [p.name for p in paths] == ["pose_00001.png", "pose_00002.png", "pose_00003.png"]
    for f, p in zip(track.frames, paths):
        # draw.py wants missing points as zeros; maps are drawn at the track file's precision
        hands = np.round(np.where(np.isnan(f.hands), 0.0, f.hands), 3)
        expected = draw_pose_map(96, 128, np.round(np.where(np.isnan(f.body), 0.0, f.body), 3), hands=hands)
        assert np.array_equal(np.asarray(Image.open(p).convert("RGB")), expected)
        assert expected.any()


def test_maps_drawn_in_memory_equal_maps_redrawn_from_the_written_track(tmp_path):
    """The drawing truncates to whole pixels: points a hair below a pixel boundary (x.9996) must be
    drawn where the track file (3 decimals) puts them, or a redraw moves limbs by a pixel."""
    rng = np.random.default_rng(5)
    track = _track(rng, frames=6, hands=True, face=True)
    for f in track.frames:
        for points in (f.body, f.hands.reshape(-1, 3), f.face):
            present = points[:, 2] > 0
            points[present, :2] = np.floor(points[present, :2]) + 0.9996
    write_track(track, tmp_path / "keypoints.json")
    again = read_track(tmp_path / "keypoints.json")
    for i in range(len(track.frames)):
        assert np.array_equal(track.draw(i), again.draw(i)), f"frame {i}"


def test_drawing_into_an_unwritable_place_says_so(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable):
        draw_track(_track(np.random.default_rng(4), frames=1), blocker / "maps")


def test_command_line_redraws_a_track(tmp_path):
    track = _track(np.random.default_rng(5), frames=2)
    write_track(track, tmp_path / "k.json")
    run = subprocess.run([sys.executable, "-m", "blender_addon.skeleton.track", "draw", str(tmp_path / "k.json"), str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pose_00001.png", "pose_00002.png"]
    body = read_track(tmp_path / "k.json").frames[1].body
    expected = draw_pose_map(96, 128, np.where(np.isnan(body), 0.0, body))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "pose_00002.png")), expected)


def test_command_line_reports_a_bad_track_without_traceback(tmp_path):
    (tmp_path / "k.json").write_text('{"format": "x"}')
    run = subprocess.run([sys.executable, "-m", "blender_addon.skeleton.track", "draw", str(tmp_path / "k.json"), str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "error:" in run.stderr and "hint:" in run.stderr and "Traceback" not in run.stderr
