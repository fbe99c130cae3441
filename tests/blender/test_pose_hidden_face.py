"""Hidden face points (docs/keypoints.md): on the bundled rig (rigs/bundled_rig.py) seen from the
front, turned 180 degrees, in profile, and with only its head bone turned, the nose, eyes and ears a
DWPose detector would not see are missing, decided by the head bone's facing against the camera."""

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from aa_contract.keypoints import BODY_NAMES  # noqa: E402
from blender_addon.skeleton import export  # noqa: E402
from rig_fixture import bundled_rig  # noqa: E402
from tests.blender._pose_rigs import add_camera  # noqa: E402

W, H = 128, 192
FACE = ("nose", "right_eye", "left_eye", "right_ear", "left_ear")


@pytest.fixture
def front(empty_blend):
    """The bundled rig in its rest pose, a camera straight in front of it (the rig faces -Y)."""
    scene = empty_blend
    rig, _ = bundled_rig.build_bundled_rig_scene(scene, motion=False)
    cam = add_camera(scene, location=(0.0, -4.0, 1.0), lens=35.0)
    scene.render.resolution_x, scene.render.resolution_y = W, H
    return scene, rig, cam


def seen(scene, rig, tmp_path, **options):
    """{face keypoint: present?} of an export of frame 1, and the export's result."""
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H, **options))
    body = result.track.frames[0].body
    return {name: bool(body[BODY_NAMES.index(name), 2] > 0) for name in FACE}, result


def turn(rig, degrees):
    rig.rotation_euler = (0.0, 0.0, math.radians(degrees))
    bpy.context.view_layer.update()


def test_seen_from_the_front_every_face_point_is_drawn(front, tmp_path):
    scene, rig, _ = front
    visible, result = seen(scene, rig, tmp_path)
    assert all(visible.values()) and result.missing_keypoints == []


def test_from_behind_no_nose_and_no_eyes_but_both_ears(front, tmp_path):
    scene, rig, _ = front
    turn(rig, 180)
    visible, result = seen(scene, rig, tmp_path)
    assert visible == {"nose": False, "right_eye": False, "left_eye": False, "right_ear": True, "left_ear": True}
    assert "nose (turned away from the camera in 1 of 1 frames)" in result.missing_keypoints
    body = result.track.frames[0].body
    assert np.isnan(body[BODY_NAMES.index("nose"), :2]).all()
    # From behind the character's right is on the image's right.
    assert body[BODY_NAMES.index("right_ear"), 0] > body[BODY_NAMES.index("left_ear"), 0]
    assert (body[1:14, 2] == 1).all()  # the body itself is drawn


@pytest.mark.parametrize("degrees, far", [(90, "left"), (-90, "right")])
def test_in_profile_the_far_eye_and_ear_are_hidden(front, tmp_path, degrees, far):
    scene, rig, _ = front
    turn(rig, degrees)  # +90: the face looks to the image's right, the character's left side away from the camera
    visible, _ = seen(scene, rig, tmp_path)
    near = "right" if far == "left" else "left"
    assert visible == {"nose": True, f"{near}_eye": True, f"{far}_eye": False, f"{near}_ear": True, f"{far}_ear": False}


@pytest.mark.parametrize("degrees, hidden", [(20, set()), (50, {"left_ear"}), (70, {"left_ear", "left_eye"}),
                                             (120, {"nose", "left_eye", "right_eye", "left_ear"}),
                                             (160, {"nose", "left_eye", "right_eye"})])
def test_turning_round_hides_the_far_ear_then_the_far_eye_then_the_face(front, tmp_path, degrees, hidden):
    scene, rig, _ = front
    turn(rig, degrees)
    visible, _ = seen(scene, rig, tmp_path)
    assert {k for k, v in visible.items() if not v} == hidden


def test_the_head_bone_decides_not_the_body(front, tmp_path):
    scene, rig, _ = front
    head = rig.pose.bones["head"]  # points up: turning about its own Y axis turns the face
    head.rotation_mode = 'XYZ'
    head.rotation_euler = (0.0, math.radians(180.0), 0.0)
    bpy.context.view_layer.update()
    visible, result = seen(scene, rig, tmp_path)
    assert not visible["nose"] and not visible["right_eye"] and not visible["left_eye"]
    assert (result.track.frames[0].body[1:14, 2] == 1).all()  # the body still faces the camera


def test_an_orthographic_camera_from_behind(front, tmp_path):
    scene, rig, cam = front
    cam.data.type, cam.data.ortho_scale = 'ORTHO', 2.5
    turn(rig, 180)
    visible, _ = seen(scene, rig, tmp_path)
    assert not visible["nose"] and not visible["left_eye"] and visible["left_ear"]


def test_hiding_can_be_turned_off(front, tmp_path):
    scene, rig, _ = front
    turn(rig, 180)
    visible, _ = seen(scene, rig, tmp_path, hide_turned_away=False)
    assert all(visible.values())


def test_a_map_without_a_head_bone_hides_nothing_and_says_so(front, tmp_path):
    scene, rig, _ = front
    turn(rig, 180)
    data = (export.bone_maps.available_maps()["bundled"]).read_text()
    import json

    no_head = json.loads(data)
    del no_head["head"]
    path = tmp_path / "no_head.json"
    path.write_text(json.dumps(no_head))
    visible, result = seen(scene, rig, tmp_path / "out", bone_map=str(path))
    assert all(visible.values())
    assert any("names no head bone" in note for note in result.notes)
