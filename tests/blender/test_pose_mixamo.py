"""Mixamo rigs (built by the test with each bone-name prefix variant): detected, exported, and the
head-bone estimates for eyes/ears/nose land on the head."""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon.skeleton import export  # noqa: E402
from aa_contract.keypoints import BODY_NAMES  # noqa: E402
from tests.blender._pose_rigs import add_camera, expected_pixel, make_mixamo  # noqa: E402

W, H = 256, 384
PREFIXES = ["mixamorig:", "mixamorig1:", "mixamorig2:", "mixamorig_", "mixamorig1_", "mixamorig", ""]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_mixamo_rig_with_prefix_is_detected_and_projected(empty_blend, tmp_path, prefix):
    scene = empty_blend
    scene.render.resolution_x, scene.render.resolution_y = W, H
    cam = add_camera(scene, location=(0, -4, 1.0))
    rig = make_mixamo(prefix)
    bone_map, missing = export.detect_bone_map(rig)
    assert bone_map.name == "mixamo" and missing == []
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H, bone_map=None))
    assert result.prefix == prefix and result.missing_keypoints == []
    body = result.track.frames[0].body
    for name, bone in (("right_elbow", "RightForeArm"), ("left_wrist", "LeftHand"), ("left_knee", "LeftLeg")):
        x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones[prefix + bone].head, W, H)
        assert tuple(body[BODY_NAMES.index(name), :2]) == pytest.approx((x, y), abs=1e-3)


def test_head_estimates_place_the_face_on_the_head(empty_blend, tmp_path):
    scene = empty_blend
    scene.render.resolution_x, scene.render.resolution_y = W, H
    cam = add_camera(scene, location=(0, -4, 1.0))
    rig = make_mixamo("mixamorig:")
    body = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H)).track.frames[0].body
    head, top = (expected_pixel(scene, cam, rig.pose.bones["mixamorig:Head"].head, W, H),
                 expected_pixel(scene, cam, rig.pose.bones["mixamorig:Head"].tail, W, H))
    idx = {n: BODY_NAMES.index(n) for n in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")}
    for n, i in idx.items():  # between the head joint and the top of the head
        assert top[1] < body[i, 1] < head[1], n
    # Seen from the front, the character's right is on the image's left.
    assert body[idx["right_ear"], 0] < body[idx["right_eye"], 0] < body[idx["nose"], 0] < body[idx["left_eye"], 0] < body[idx["left_ear"], 0]


def test_eye_bones_are_used_when_the_rig_has_them(empty_blend, tmp_path):
    scene = empty_blend
    cam = add_camera(scene, location=(0, -4, 1.0))
    scene.render.resolution_x, scene.render.resolution_y = W, H
    rig = make_mixamo("mixamorig1:", eyes=True)
    body = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H)).track.frames[0].body
    x, y, _ = expected_pixel(scene, cam, rig.pose.bones["mixamorig1:LeftEye"].head, W, H)
    assert tuple(body[BODY_NAMES.index("left_eye"), :2]) == pytest.approx((x, y), abs=1e-3)


def test_hands_requested_on_a_rig_without_fingers_is_a_note_not_an_error(empty_blend, tmp_path):
    scene = empty_blend
    add_camera(scene)
    rig = make_mixamo("mixamorig:")
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, 64, 64, hands=True, face=True))
    assert result.track.frames[0].hands is not None  # the wrists are hand point 0
    assert np.isnan(result.track.frames[0].hands[0, 1:, 0]).all()
    assert any("Face not drawn" in n for n in result.notes)
