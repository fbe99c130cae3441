import numpy as np
import pytest

from blender_addon.skeleton.rescale import BODY_TREE, follow_anchor, rescale_body_track


def _skeleton(scale=1.0, offset=(0.0, 0.0)):
    """A standing figure (pixels), limbs in OpenPose COCO-18 order."""
    xy = np.array([
        [50, 20], [50, 35], [40, 35], [35, 55], [33, 75], [60, 35], [65, 55], [67, 75], [44, 80], [43, 110],
        [42, 140], [56, 80], [57, 110], [58, 140], [47, 17], [53, 17], [44, 19], [56, 19],
    ], dtype=float)
    xy = (xy - xy[1]) * scale + xy[1] + offset
    return np.column_stack([xy, np.ones(18)])


def _lengths(body):
    return np.array([np.linalg.norm(body[c, :2] - body[p, :2]) for p, c in BODY_TREE])


def test_identity_when_driving_equals_reference():
    track = np.stack([_skeleton(), _skeleton(offset=(3, -2))])
    out = rescale_body_track(track, _skeleton())
    np.testing.assert_allclose(out, track, atol=1e-9)


def test_limb_lengths_become_the_references_and_directions_stay():
    rng = np.random.default_rng(0)
    reference = _skeleton()
    reference[:, :2] += rng.normal(0, 2, (18, 2))  # other proportions than the driving figure
    driving = np.stack([_skeleton(scale=1.6, offset=(30, 10)) for _ in range(3)])
    driving[1, 4, :2] += [5, -8]  # the wrist moves in frame 1
    out = rescale_body_track(driving, reference)
    np.testing.assert_allclose(_lengths(out[0]), _lengths(reference), rtol=1e-9)
    for f in range(3):
        for p, c in BODY_TREE:
            d = driving[f, c, :2] - driving[f, p, :2]
            o = out[f, c, :2] - out[f, p, :2]
            assert abs(d[0] * o[1] - d[1] * o[0]) < 1e-6 * np.linalg.norm(d) * np.linalg.norm(o) + 1e-9 and np.dot(d, o) > 0
    np.testing.assert_allclose(out[0, 1, :2], reference[1, :2])  # placed on the reference's neck


def test_motion_of_the_root_is_scaled_by_the_body_ratio():
    driving = np.stack([_skeleton(scale=2.0), _skeleton(scale=2.0, offset=(20, 0))])
    out = rescale_body_track(driving, _skeleton())
    np.testing.assert_allclose(out[1, 1, :2] - out[0, 1, :2], [10, 0])


def test_missing_points_stay_missing_and_children_of_missing_parents_are_placed():
    driving = np.stack([_skeleton(scale=2.0)] * 2)
    driving[1, 3, 2] = 0.0  # right elbow missing in frame 1
    driving[1, 16, :] = np.nan  # right ear missing
    out = rescale_body_track(driving, _skeleton())
    assert out[1, 3, 2] == 0 and np.isnan(out[1, 3, :2]).all()
    assert out[1, 16, 2] == 0
    assert out[1, 4, 2] == 1 and np.isfinite(out[1, 4, :2]).all()  # the wrist still drawn
    np.testing.assert_allclose(out[1, 4, :2], out[0, 4, :2], atol=1e-9)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="expected driving"):
        rescale_body_track(np.zeros((18, 3)), np.zeros((18, 3)))


def test_a_hand_follows_its_wrist():
    hand = np.array([[10.0, 10.0, 1.0], [12.0, 10.0, 1.0], [np.nan, np.nan, 0.0]])
    moved = follow_anchor(hand, np.array([10.0, 10.0]), np.array([20.0, 30.0]), 2.0)
    np.testing.assert_allclose(moved[:2, :2], [[20, 30], [24, 30]])
    assert moved[2, 2] == 0


def test_track_command_rescales_a_track_file(tmp_path):
    import subprocess
    import sys

    from blender_addon.skeleton.track import FrameKeypoints, KeypointTrack, read_track, write_track

    driving = KeypointTrack(128, 192, 24.0, [FrameKeypoints(f, _skeleton(scale=1.5, offset=(f, 0))) for f in range(1, 4)], {"armature": "Walker"})
    reference = KeypointTrack(256, 384, 24.0, [FrameKeypoints(1, _skeleton() * [2, 2, 1])], {"image": "hero.png"})
    write_track(driving, tmp_path / "driving.json")
    write_track(reference, tmp_path / "reference.json")
    done = subprocess.run([sys.executable, "-m", "blender_addon.skeleton.track", "rescale", str(tmp_path / "driving.json"),
                           str(tmp_path / "reference.json"), str(tmp_path / "out.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = read_track(tmp_path / "out.json")
    # the reference, brought to the track's 128x192 grid, is _skeleton(): its proportions come back
    np.testing.assert_allclose(_lengths(out.frames[0].body), _lengths(_skeleton()), rtol=1e-6)
    assert out.source["rescaled_to"]["reference"] == {"image": "hero.png"}


def test_points_rescaled_out_of_the_frame_are_missing_as_in_the_export():
    from blender_addon.skeleton.track import FrameKeypoints, KeypointTrack, rescale_track

    # the reference character has arms three times as long: the driving wrists end up beyond the
    # 100 px wide frame, and the export would have marked such points missing, not drawn them clipped
    long_arms = _skeleton()
    for shoulder, elbow, wrist in ((2, 3, 4), (5, 6, 7)):
        long_arms[elbow, :2] = long_arms[shoulder, :2] + 3 * (long_arms[elbow, :2] - long_arms[shoulder, :2])
        long_arms[wrist, :2] = long_arms[elbow, :2] + 3 * (_skeleton()[wrist, :2] - _skeleton()[elbow, :2])
    arms_out = _skeleton()
    arms_out[[4, 7], 0] = (5.0, 95.0)  # wrists stretched sideways
    arms_out[[3, 6], 0] = (20.0, 80.0)
    driving = KeypointTrack(100, 150, 24.0, [FrameKeypoints(1, _skeleton()), FrameKeypoints(2, arms_out)])
    reference = KeypointTrack(100, 150, 24.0, [FrameKeypoints(1, long_arms)])
    out = rescale_track(driving, reference)
    body = out.frames[1].body
    x, y = body[:, 0], body[:, 1]
    inside = (x >= 0) & (x <= 100) & (y >= 0) & (y <= 150)
    assert not inside[[4, 7]].any()
    assert np.isnan(body[[4, 7], :2]).all() and (body[[4, 7], 2] == 0).all()
    present = body[:, 2] > 0
    assert inside[present].all()  # nothing drawn clipped
    assert present[[0, 1, 2, 5] + list(range(8, 18))].all()  # head, shoulders, legs still there
