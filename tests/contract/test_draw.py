"""Our numpy skeleton drawing equals the DWPose drawing of controlnet-aux (the oracle) pixel for pixel."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from aa_contract.draw import HAND_COLORS, HAND_EDGES, draw_pose_map


def _oracle():
    """controlnet_aux/dwpose/util.py loaded by path: the package's __init__ imports every detector
    (torchvision, timm...), which this environment deliberately lacks."""
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("controlnet-aux is not installed (requirements/engine-test.txt)", allow_module_level=True)
    path = Path(list(spec.submodule_search_locations)[0]) / "dwpose" / "util.py"
    module_spec = importlib.util.spec_from_file_location("dwpose_util_oracle", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


util = _oracle()


def _random_body(rng, width, height, missing=0.15, margin=0.15):
    """18 points, mostly inside the frame, some outside, some missing."""
    xy = rng.uniform(-margin, 1 + margin, size=(18, 2)) * [width, height]
    if rng.random() < 0.3:  # a plausible compact skeleton rather than scattered points
        centre = rng.uniform(0.2, 0.8, size=2) * [width, height]
        xy = centre + rng.normal(0, 0.12, size=(18, 2)) * [width, height]
    conf = (rng.random(18) > missing).astype(float)
    return np.column_stack([xy, conf])


def _oracle_body(width, height, body):
    candidate = body[:, :2] / [float(width), float(height)]
    subset = np.where(body[:, 2] > 0, np.arange(18), -1).astype(float)[None]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    return util.draw_bodypose(canvas, candidate, subset)


@pytest.mark.parametrize("width, height, seed", [(512, 768, 0), (128, 192, 1), (64, 64, 2), (100, 72, 3)])
def test_body_drawing_equals_dwpose_on_random_skeletons(width, height, seed):
    rng = np.random.default_rng(seed)
    for trial in range(100):
        body = _random_body(rng, width, height)
        ours = draw_pose_map(width, height, body)
        theirs = _oracle_body(width, height, body)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
        differing = np.argwhere((ours != theirs).any(axis=-1))
        assert not len(differing), f"trial {trial}: {len(differing)} pixels differ, first at (y, x)={tuple(differing[0])}"


def test_hand_colours_equal_matplotlib_hsv():
    import matplotlib.colors

    for i, colour in enumerate(HAND_COLORS):
        expected = np.rint(matplotlib.colors.hsv_to_rgb([i / float(len(HAND_EDGES)), 1.0, 1.0]) * 255).astype(int)
        assert tuple(expected) == colour


@pytest.mark.parametrize("width, height, seed", [(512, 768, 10), (128, 192, 11)])
def test_hands_and_face_equal_dwpose(width, height, seed):
    rng = np.random.default_rng(seed)
    for trial in range(40):
        body = _random_body(rng, width, height)
        centre = rng.uniform(0.2, 0.8, size=(2, 1, 2)) * [width, height]
        hands_xy = centre + rng.normal(0, 0.05, size=(2, 21, 2)) * [width, height]
        hands = np.concatenate([hands_xy, (rng.random((2, 21, 1)) > 0.1).astype(float)], axis=-1)
        face_xy = rng.uniform(0.3, 0.7, size=(68, 2)) * [width, height]
        face = np.column_stack([face_xy, (rng.random(68) > 0.1).astype(float)])
        ours = draw_pose_map(width, height, body, hands=hands, face=face)
        theirs = _oracle_body(width, height, body)
        oracle_hands = np.where(hands[..., 2:] > 0, hands[..., :2] / [float(width), float(height)], -1.0)
        theirs = util.draw_handpose(theirs, oracle_hands)
        oracle_face = np.where(face[:, 2:] > 0, face[:, :2] / [float(width), float(height)], -1.0)[None]
        theirs = util.draw_facepose(theirs, oracle_face)
        differing = np.argwhere((ours != theirs).any(axis=-1))
        assert not len(differing), f"trial {trial}: {len(differing)} pixels differ, first at (y, x)={tuple(differing[0])}"


def test_missing_points_and_their_limbs_are_not_drawn():
    body = np.zeros((18, 3))
    body[:, :2] = [32, 32]
    assert not draw_pose_map(64, 64, body).any()  # every confidence 0
    body[1] = [32, 20, 1]
    body[2] = [20, 20, 1]
    body[3] = [math.nan, 40, 1]  # NaN counts as missing
    drawn = draw_pose_map(64, 64, body)
    assert drawn[20, 26].any()  # the neck-shoulder limb
    assert not drawn[40:, :].any()  # nothing towards the NaN elbow


def test_nan_hand_and_face_points_are_missing_not_errors():
    body = np.full((18, 3), np.nan)
    hands = np.full((2, 21, 3), np.nan)
    face = np.full((68, 3), np.nan)
    assert not draw_pose_map(64, 64, body, hands=hands, face=face).any()
