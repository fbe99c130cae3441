"""The synthetic data: deterministic, split-disjoint, smooth, and consistent with its skeleton maps."""

import numpy as np
import pytest

from aa_engine.data import make_batch, make_clip
from aa_engine.data.motions import HELD_OUT_MOTIONS, TRAIN_MOTIONS
from aa_engine.errors import BadRequest


def test_same_split_and_index_give_identical_pixels():
    a = make_clip("train", 7, 4)
    b = make_clip("train", 7, 4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.poses, b.poses) and np.array_equal(a.reference, b.reference)


def test_heldout_characters_differ_from_training_ones():
    for i in range(5):
        assert not np.array_equal(make_clip("train", i, 1).reference, make_clip("heldout", i, 1).reference)


def test_heldout_split_contains_a_motion_family_never_trained_on():
    train_motions = {make_clip("train", i, 1).motion for i in range(60)}
    heldout_motions = {make_clip("heldout", i, 1).motion for i in range(9)}
    assert train_motions <= set(TRAIN_MOTIONS)
    assert set(HELD_OUT_MOTIONS) & heldout_motions
    assert not set(HELD_OUT_MOTIONS) & train_motions


def test_motion_is_smooth_not_random_poses():
    clip = make_clip("train", 3, 12)
    moves = np.abs(np.diff(clip.keypoints[:, :14, :2], axis=0)).max()
    height = clip.keypoints[0, :, 1].max() - clip.keypoints[0, :, 1].min()
    assert moves < 0.25 * height, "a joint jumped by more than a quarter of the body between frames"
    assert np.abs(clip.keypoints[-1, :14, :2] - clip.keypoints[0, :14, :2]).max() > 1.0, "the character does not move at all"


def test_skeleton_map_is_drawn_where_the_keypoints_are():
    clip = make_clip("train", 5, 2)
    pose = clip.poses[0]
    h, w = pose.shape[:2]
    for x, y, visible in clip.keypoints[0]:
        if visible and 0 <= x < w and 0 <= y < h:
            assert pose[int(y), int(x)].max() > 0
    assert (pose.max(axis=2) == 0).mean() > 0.5, "skeleton maps are mostly black background"


def test_reference_is_the_same_character_as_the_frames():
    clip = make_clip("heldout", 4, 3)
    assert np.array_equal(clip.reference[0, 0], clip.frames[0][0, 0])  # same background colour
    other = make_clip("heldout", 5, 1)
    assert not np.array_equal(clip.reference[0, 0], other.reference[0, 0])


def test_batch_tensors_have_the_documented_shapes_and_ranges():
    batch = make_batch("train", [0, 1], 3, 64, 96)
    assert batch.references.shape == (2, 3, 96, 64)
    assert batch.poses.shape == batch.targets.shape == (2, 3, 3, 96, 64)
    assert batch.targets.min() >= -1 and batch.targets.max() <= 1
    assert batch.poses.min() >= 0 and batch.poses.max() <= 1


def test_unknown_split_is_a_clear_error():
    with pytest.raises(BadRequest, match="Unknown data split"):
        make_clip("validation", 0, 1)


def test_export_writes_reference_poses_and_truth(tmp_path):
    from PIL import Image

    from aa_engine.data.export import main

    assert main(["--out", str(tmp_path), "--frames", "2"]) == 0
    assert Image.open(tmp_path / "reference.png").size == (64, 96)
    assert sorted(p.name for p in (tmp_path / "poses").iterdir()) == ["pose_0001.png", "pose_0002.png"]
    assert len(list((tmp_path / "truth").iterdir())) == 2


# -- the rich style (v2 model's data) ----------------------------------------------------------------
def test_rich_clips_are_deterministic_and_sized():
    a = make_clip("train", 3, 2, 128, 192, style="rich")
    b = make_clip("train", 3, 2, 128, 192, style="rich")
    assert a.frames.shape == (2, 192, 128, 3) and a.poses.shape == (2, 192, 128, 3)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.reference, b.reference)


def test_rich_characters_are_new_characters_not_restyled_flat_ones():
    for i in range(4):
        rich, flat = make_clip("train", i, 1, style="rich"), make_clip("train", i, 1)
        assert not np.array_equal(rich.keypoints, flat.keypoints)
        assert not np.array_equal(make_clip("heldout", i, 1, style="rich").reference, rich.reference)


def test_rich_style_has_texture_and_detail_the_flat_style_lacks():
    def colours(style):
        return np.mean([len(np.unique(make_clip("train", i, 1, 128, 192, style).frames[0].reshape(-1, 3), axis=0)) for i in range(8)])

    assert colours("rich") > 2 * colours("flat")


def test_rich_heldout_keeps_the_unseen_motion_family():
    assert set(HELD_OUT_MOTIONS) & {make_clip("heldout", i, 1, style="rich").motion for i in range(9)}
    assert not set(HELD_OUT_MOTIONS) & {make_clip("train", i, 1, style="rich").motion for i in range(30)}


def test_rich_skeleton_maps_match_the_keypoints():
    clip = make_clip("heldout", 2, 2, 128, 192, style="rich")
    for x, y, visible in clip.keypoints[1]:
        if visible and 0 <= x < 128 and 0 <= y < 192:
            assert clip.poses[1][int(y), int(x)].max() > 0


def test_unknown_style_is_a_clear_error():
    with pytest.raises(BadRequest, match="Unknown data style"):
        make_clip("train", 0, 1, style="photo")


def test_export_writes_the_rich_style_at_its_size(tmp_path):
    from PIL import Image

    from aa_engine.data.export import main

    assert main(["--out", str(tmp_path), "--frames", "1", "--style", "rich", "--width", "128", "--height", "192"]) == 0
    assert Image.open(tmp_path / "reference.png").size == (128, 192)
