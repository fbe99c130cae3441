"""A generated Rigify rig, posed by the test through its FK controls: the exported wrist/elbow/knee
keypoints are the camera projection of the ORG- bone heads (0.5 px), a hand behind the camera is
missing, an orthographic camera works, the user's frame comes back."""

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

from blender_addon.skeleton import export  # noqa: E402
from aa_contract.keypoints import BODY_NAMES  # noqa: E402
from tests.blender._pose_rigs import add_camera, expected_pixel  # noqa: E402

pytestmark = pytest.mark.slow

W, H = 512, 768
CHECKED = {  # keypoint -> ORG- bone whose head it is
    "right_wrist": "ORG-hand.R", "left_wrist": "ORG-hand.L", "right_elbow": "ORG-forearm.R", "left_elbow": "ORG-forearm.L",
    "right_knee": "ORG-shin.R", "left_knee": "ORG-shin.L", "right_shoulder": "ORG-upper_arm.R", "left_ankle": "ORG-foot.L",
}


def _aim(rig, control: str, direction):
    """Rotate an FK control about its head so its Y axis points along `direction` (armature space)."""
    pb = rig.pose.bones[control]
    y_axis = pb.matrix.to_3x3().col[1].normalized()
    turn = y_axis.rotation_difference(Vector(direction).normalized()).to_matrix().to_4x4()
    head = pb.matrix.translation.copy()
    pb.matrix = Matrix.Translation(head) @ turn @ Matrix.Translation(-head) @ pb.matrix
    bpy.context.view_layer.update()


def _key(rig, control: str, frame: int):
    pb = rig.pose.bones[control]
    path = "rotation_quaternion" if pb.rotation_mode == 'QUATERNION' else "rotation_euler"
    pb.keyframe_insert(path, frame=frame)


@pytest.fixture(scope="module")
def rigify_shot():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    try:
        bpy.ops.object.armature_human_metarig_add()
        metarig = bpy.context.object
        bpy.ops.pose.rigify_generate()
        rig = bpy.context.object
    finally:
        addon_utils.disable("rigify")  # bpy 4.2/4.5 misbehave at exit with rigify enabled
    bpy.data.objects.remove(metarig)
    bpy.ops.object.mode_set(mode='POSE')
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = W, H
    for parent in ("upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R"):
        rig.pose.bones[parent]["IK_FK"] = 1.0  # drive the limbs by their FK controls
    controls = ("upper_arm_fk.L", "forearm_fk.L", "upper_arm_fk.R", "forearm_fk.R", "thigh_fk.L", "shin_fk.R")
    for c in controls:
        _key(rig, c, 1)
    scene.frame_set(10)
    _aim(rig, "upper_arm_fk.L", (1, 0, 0.6))    # left arm raised
    _aim(rig, "forearm_fk.L", (0.3, 0, 1))       # forearm up: a wave
    _aim(rig, "upper_arm_fk.R", (-0.4, -1, 0))   # right arm reaching forward, toward the camera
    _aim(rig, "forearm_fk.R", (0, -1, 0))
    _aim(rig, "thigh_fk.L", (0.1, -1, -1))       # left knee up
    _aim(rig, "shin_fk.R", (0, 0.7, -1))         # right foot back
    for c in controls:
        _key(rig, c, 10)
    bpy.ops.object.mode_set(mode='OBJECT')
    cam = add_camera(scene, location=(0.3, -5.0, 1.1), lens=40.0)
    cam.rotation_euler = (math.radians(88), 0, math.radians(3))
    scene.frame_set(1)
    return scene, rig, cam


def _org_pixels(scene, rig, cam, frame):
    scene.frame_set(frame)
    return {k: expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones[b].head, W, H) for k, b in CHECKED.items()}


def test_rigify_is_detected(rigify_shot):
    scene, rig, cam = rigify_shot
    bone_map, missing = export.detect_bone_map(rig)
    assert bone_map.name == "rigify" and missing == []


def test_keypoints_equal_the_projection_of_org_bone_heads(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 10, W, H))
    assert result.bone_map_name == "rigify" and result.missing_keypoints == []
    moved = 0.0
    for frame in (1, 4, 10):
        body = result.track.frames[frame - 1].body
        for name, (x, y, _) in _org_pixels(scene, rig, cam, frame).items():
            got = body[BODY_NAMES.index(name)]
            assert got[2] == 1.0 and abs(got[0] - x) < 0.5 and abs(got[1] - y) < 0.5, (frame, name, got, x, y)
    first, last = result.track.frames[0].body, result.track.frames[-1].body
    for name in ("left_wrist", "left_elbow", "left_knee", "right_wrist"):
        moved = max(moved, float(np.hypot(*(first[BODY_NAMES.index(name), :2] - last[BODY_NAMES.index(name), :2]))))
    assert moved > 50  # the test's pose really moved the limbs


def test_hands_follow_the_finger_bones(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 10, 10, W, H, hands=True))
    hands = result.track.frames[0].hands
    scene.frame_set(10)
    x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones["ORG-f_index.03.L"].tail, W, H)
    assert tuple(hands[1, 8, :2]) == pytest.approx((x, y), abs=0.5)  # left index fingertip
    assert np.isfinite(hands[:, :, 0]).all()


def test_a_hand_behind_the_camera_is_missing(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    scene.frame_set(10)
    hand = rig.matrix_world @ rig.pose.bones["ORG-hand.R"].head
    elbow = rig.matrix_world @ rig.pose.bones["ORG-forearm.R"].head
    near = bpy.data.objects.new("Near", bpy.data.cameras.new("Near"))
    scene.collection.objects.link(near)
    near.data.lens = 12.0
    near.location = (elbow.x, (hand.y + elbow.y) / 2, elbow.z)  # between the reaching hand and its elbow
    near.rotation_euler = (math.radians(90), 0, 0)
    bpy.context.view_layer.update()
    try:
        result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 10, W, H, camera=near))
        z = world_to_camera_view(scene, near, hand).z
        assert z < near.data.clip_start
        reach = result.track.frames[-1].body
        assert reach[BODY_NAMES.index("right_wrist"), 2] == 0 and np.isnan(reach[BODY_NAMES.index("right_wrist"), 0])
        assert reach[BODY_NAMES.index("right_elbow"), 2] == 1
        assert result.track.source["camera"] == "Near"
    finally:
        bpy.data.objects.remove(near)


def test_an_orthographic_camera_works(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    cam.data.type = 'ORTHO'
    cam.data.ortho_scale = 2.6
    try:
        result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 10, 10, W, H))
        body = result.track.frames[0].body
        for name, (x, y, _) in _org_pixels(scene, rig, cam, 10).items():
            got = body[BODY_NAMES.index(name)]
            assert got[2] == 1.0 and abs(got[0] - x) < 0.5 and abs(got[1] - y) < 0.5, name
    finally:
        cam.data.type = 'PERSP'


def test_the_current_frame_is_restored(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    scene.frame_set(7)
    export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 10, W, H, write_maps=False))
    assert scene.frame_current == 7
    assert not list(tmp_path.glob("pose_*.png")) and (tmp_path / "keypoints.json").is_file()


def test_face_points_follow_the_face_bones(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 10, 10, W, H, face=True))
    face = result.track.frames[0].face
    assert face.shape == (68, 3) and (face[:, 2] == 1).all()
    scene.frame_set(10)
    for index, bone, at in ((54, "ORG-lip.T.L.001", "tail"), (8, "ORG-chin", "head"), (36, "ORG-lid.T.R", "head")):
        pb = rig.pose.bones[bone]
        x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ (pb.tail if at == "tail" else pb.head), W, H)
        assert tuple(face[index, :2]) == pytest.approx((x, y), abs=0.5), index
    # The layout's sides: point 0 (character's right jaw) is left of point 16 in a front view.
    assert face[0, 0] < face[8, 0] < face[16, 0]
    assert face[8, 1] > face[30, 1] > face[27, 1]  # chin below the nose tip below the bridge


def test_the_ear_is_the_middle_of_the_ear_bones(rigify_shot, tmp_path):
    """The ear point is the mean of the heads of the ring of five ear bones (projected as one 3D
    point), not the lower ear bone's tail, which sits at the top of the ring."""
    scene, rig, cam = rigify_shot
    body = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 10, 10, W, H)).track.frames[0].body
    scene.frame_set(10)
    for side, name in (("L", "left_ear"), ("R", "right_ear")):
        ring = [rig.pose.bones[f"ORG-ear.{side}{suffix}"].head for suffix in ("", ".001", ".002", ".003", ".004")]
        middle = sum(ring, Vector()) / len(ring)
        x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ middle, W, H)
        got = body[BODY_NAMES.index(name)]
        assert got[2] == 1.0 and tuple(got[:2]) == pytest.approx((x, y), abs=0.01), name
        # The old point, the lower ear bone's tail, is a few pixels above the middle at 512x768.
        _, tail_y, _ = expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones[f"ORG-ear.{side}"].tail, W, H)
        assert 3.0 < y - tail_y < 8.0, (name, y - tail_y)


def test_seen_from_behind_the_face_is_hidden(rigify_shot, tmp_path):
    scene, rig, cam = rigify_shot
    rig.rotation_euler = (0.0, 0.0, math.pi)
    bpy.context.view_layer.update()
    try:
        result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H, face=True))
    finally:
        rig.rotation_euler = (0.0, 0.0, 0.0)
        bpy.context.view_layer.update()
    body, face = result.track.frames[0].body, result.track.frames[0].face
    present = {name: body[BODY_NAMES.index(name), 2] > 0 for name in ("nose", "right_eye", "left_eye", "right_ear", "left_ear")}
    assert present == {"nose": False, "right_eye": False, "left_eye": False, "right_ear": True, "left_ear": True}
    assert (face[:, 2] == 0).all()  # the 68 face points too
