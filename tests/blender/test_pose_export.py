"""export_shot in real bpy on a small armature the test builds: projection through every camera
setting equals world_to_camera_view, maps and track on disk, missing points, frame restore, errors."""

import json
import math
import random

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_addon.skeleton import export  # noqa: E402
from aa_contract.draw import BODY_NAMES, draw_pose_map  # noqa: E402
from blender_addon.skeleton.errors import (BadBoneMap, BadFrameRange, NoArmature, NoCamera, NothingInView,  # noqa: E402
                                           OutputNotWritable, UnmappedBones)
from blender_addon.skeleton.project import KeypointProjector, camera_view_coords  # noqa: E402
from blender_addon.skeleton.track import read_track  # noqa: E402
from tests.blender._pose_rigs import add_camera, expected_pixel, make_armature, make_mixamo  # noqa: E402

W, H = 96, 128


@pytest.fixture
def shot(empty_blend):
    scene = empty_blend
    scene.render.resolution_x, scene.render.resolution_y = W, H
    rig = make_mixamo(prefix="")
    cam = add_camera(scene, location=(0, -5, 1.0))
    pb = rig.pose.bones["LeftForeArm"]
    pb.rotation_mode = 'XYZ'
    for frame, angle in ((1, 0.0), (5, 80.0)):
        pb.rotation_euler = (0.0, 0.0, math.radians(angle))
        pb.keyframe_insert("rotation_euler", frame=frame)
    return scene, rig, cam


def _png_pixels(path):
    """The PNG as Blender reads it: (H, W, 3) uint8, top row first."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        image.colorspace_settings.name = "Non-Color"
        w, h = image.size
        px = np.empty(w * h * 4, dtype=np.float32)
        image.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(image)
    return np.round(px.reshape(h, w, 4)[::-1, :, :3] * 255).astype(np.uint8)


@pytest.mark.parametrize("setup", [
    {}, {"sensor_fit": 'HORIZONTAL'}, {"sensor_fit": 'VERTICAL'}, {"shift_x": 0.2, "shift_y": -0.1},
    {"pixel_aspect_x": 2.0}, {"resolution_percentage": 37}, {"resolution_x": 300, "resolution_y": 120},
    {"type": 'ORTHO', "ortho_scale": 3.0}, {"type": 'ORTHO', "shift_x": -0.3, "sensor_fit": 'VERTICAL'},
])
def test_projection_equals_world_to_camera_view(shot, setup):
    scene, rig, cam = shot
    for key, value in setup.items():
        target = scene.render if hasattr(scene.render, key) else cam.data
        setattr(target, key, value)
    cam.rotation_euler = (math.radians(80), math.radians(5), math.radians(10))
    rng = random.Random(0)
    points = np.array([[rng.uniform(-3, 3), rng.uniform(-8, 4), rng.uniform(-2, 4)] for _ in range(200)])
    ours = camera_view_coords(scene, cam, points)
    for p, o in zip(points, ours):
        ref = world_to_camera_view(scene, cam, Vector(p))
        assert o == pytest.approx(tuple(ref), rel=1e-5, abs=1e-5)  # mathutils works in float32


def test_keypoints_are_the_camera_projection_of_the_mapped_bones(shot):
    scene, rig, cam = shot
    scene.frame_set(3)
    projector = KeypointProjector(rig, export.resolve_for_armature(rig))
    body = projector.project(scene, cam, W, H)
    for name, bone in (("left_elbow", "LeftForeArm"), ("left_wrist", "LeftHand"), ("right_knee", "RightLeg"), ("left_hip", "LeftUpLeg")):
        x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones[bone].head, W, H)
        assert tuple(body[BODY_NAMES.index(name)]) == pytest.approx((x, y, 1.0), abs=1e-3)
    shoulders = [rig.matrix_world @ rig.pose.bones[b].head for b in ("RightArm", "LeftArm")]
    x, y, _ = expected_pixel(scene, cam, (shoulders[0] + shoulders[1]) / 2, W, H)
    assert tuple(body[BODY_NAMES.index("neck")][:2]) == pytest.approx((x, y), abs=1e-3)


def test_export_writes_the_track_only_by_default(shot, tmp_path):
    scene, rig, cam = shot
    calls = []
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path / "poses"), 1, 5, W, H), progress=lambda d, t: calls.append((d, t)))
    assert result.map_paths == [] and sorted(p.name for p in (tmp_path / "poses").iterdir()) == ["keypoints.json"]
    assert calls == [(i, 5) for i in range(1, 6)]
    track = read_track(result.track_path)
    assert [f.frame for f in track.frames] == [1, 2, 3, 4, 5] and (track.width, track.height) == (W, H)


def test_export_writes_numbered_maps_and_a_track_on_request(shot, tmp_path):
    scene, rig, cam = shot
    calls = []
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path / "poses"), 1, 5, W, H, write_maps=True),
                                progress=lambda d, t: calls.append((d, t)))
    assert [p.name for p in result.map_paths] == [f"pose_{i:05d}.png" for i in range(1, 6)]
    assert calls == [(i, 10) for i in range(1, 11)]  # 5 frames projected, then 5 maps drawn
    assert result.bone_map_name == "mixamo" and result.track_path.name == "keypoints.json"
    data = json.loads(result.track_path.read_text())
    assert (data["width"], data["height"], data["frame_start"], data["frame_end"]) == (W, H, 1, 5)
    assert data["source"]["armature"] == rig.name and data["source"]["camera"] == cam.name
    assert [f["frame"] for f in data["frames"]] == [1, 2, 3, 4, 5]
    maps = [_png_pixels(p) for p in result.map_paths]
    for f, pixels in zip(read_track(result.track_path).frames, maps):  # the maps are the drawing of the file's keypoints
        assert np.array_equal(pixels, draw_pose_map(W, H, np.where(np.isnan(f.body), 0.0, f.body)))
    assert maps[0].any() and not np.array_equal(maps[0], maps[-1])  # the forearm moved
    assert not list((tmp_path / "poses").glob("*.tmp"))


def test_points_behind_the_camera_are_missing_not_drawn(shot, tmp_path):
    scene, rig, cam = shot
    cam.rotation_euler = (math.radians(-90), 0, 0)  # turned round: looking along -Y, the body 5 m behind it
    scene.frame_set(1)
    hand = rig.pose.bones["LeftHand"]
    moved = hand.matrix.copy()
    moved.translation = (0.0, -8.0, 1.0)  # only the left hand, 3 m in front of the camera
    hand.matrix = moved
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H, write_maps=True))
    body = result.track.frames[0].body
    wrist = BODY_NAMES.index("left_wrist")
    assert body[wrist, 2] == 1
    others = np.delete(body, wrist, axis=0)
    assert (others[:, 2] == 0).all() and np.isnan(others[:, :2]).all()
    v = world_to_camera_view(scene, cam, rig.matrix_world @ rig.pose.bones["LeftArm"].head)
    assert v.z < 0 and 0 <= v.x <= 1 and 0 <= v.y <= 1  # world_to_camera_view alone would place it in the frame
    pixels = _png_pixels(result.map_paths[0])
    drawn = read_track(result.track_path).frames[0].body  # at the track file's precision, as the export draws it
    assert pixels.any() and np.array_equal(pixels, draw_pose_map(W, H, np.where(np.isnan(drawn), 0.0, drawn)))
    assert "left_shoulder (out of view in 1 of 1 frames)" in result.missing_keypoints


def test_a_rig_never_in_view_is_an_error_and_partly_empty_shots_a_note(shot, tmp_path):
    scene, rig, cam = shot
    cam.keyframe_insert("rotation_euler", frame=2)  # facing the rig up to frame 2 ...
    cam.rotation_euler = (math.radians(-90), 0, 0)  # ... turned away from frame 3 on
    cam.keyframe_insert("rotation_euler", frame=3)
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 4, W, H))
    assert any("Nothing of the rig is in view in 2 of 4 frames (first: 3)" in n for n in result.notes)
    with pytest.raises(NothingInView) as info:
        export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 3, 4, W, H))
    assert "frames 3-4" in info.value.message and info.value.hint


def test_one_point_out_of_frame_is_dropped_the_rest_drawn(shot, tmp_path):
    scene, rig, cam = shot
    rig.pose.bones["LeftForeArm"].scale = (1.0, 40.0, 1.0)  # the left hand far off to the side
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 1, W, H))
    body = result.track.frames[0].body
    assert body[BODY_NAMES.index("left_wrist"), 2] == 0
    assert body[BODY_NAMES.index("left_elbow"), 2] == 1 and body[BODY_NAMES.index("right_wrist"), 2] == 1
    assert result.missing_keypoints == ["left_wrist (out of view in 1 of 1 frames)"]


def test_the_users_frame_and_subframe_are_restored(shot, tmp_path):
    scene, rig, cam = shot
    scene.frame_set(3, subframe=0.25)
    export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 5, W, H))
    assert (scene.frame_current, scene.frame_subframe) == (3, pytest.approx(0.25))

    def fail(done, total):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 5, W, H), progress=fail)
    assert (scene.frame_current, scene.frame_subframe) == (3, pytest.approx(0.25))


def test_maps_left_from_a_longer_export_are_removed(shot, tmp_path):
    scene, rig, cam = shot
    export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 5, W, H, write_maps=True))
    export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H, write_maps=True))
    assert sorted(p.name for p in tmp_path.glob("pose_*.png")) == ["pose_00001.png", "pose_00002.png"]
    export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H))  # the track alone: no maps of another export stay
    assert not list(tmp_path.glob("pose_*.png"))


def test_bad_inputs_raise_errors_with_hints(shot, tmp_path):
    scene, rig, cam = shot
    cases = [
        (NoArmature, lambda: export.export_shot(export.ExportRequest(scene, cam, str(tmp_path), 1, 2, W, H))),
        (BadFrameRange, lambda: export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 5, 2, W, H))),
        (BadBoneMap, lambda: export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H, bone_map="metahuman"))),
        (UnmappedBones, lambda: export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H, bone_map="rigify"))),
    ]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases.append((OutputNotWritable, lambda: export.export_shot(export.ExportRequest(scene, rig, str(blocker / "poses"), 1, 2, W, H))))
    for error, call in cases:
        with pytest.raises(error) as info:
            call()
        assert info.value.message and info.value.hint
    empty = bpy.data.objects.new("Empty", None)
    scene.collection.objects.link(empty)
    scene.camera = empty
    with pytest.raises(NoCamera, match="not a camera"):
        export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H))
    scene.camera = None
    with pytest.raises(NoCamera, match="no active camera"):
        export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 2, W, H))


def test_an_armature_no_map_fits_names_the_missing_bones(empty_blend, tmp_path):
    add_camera(empty_blend)
    rig = make_armature({"Bone": ((0, 0, 0), (0, 0, 1), None), "Bone.001": ((0, 0, 1), (0, 0, 2), "Bone")})
    with pytest.raises(UnmappedBones) as info:
        export.export_shot(export.ExportRequest(empty_blend, rig, str(tmp_path), 1, 1, W, H))
    assert info.value.missing_bones and info.value.missing_bones[0] in info.value.message


def test_a_user_bone_map_file_is_used(shot, tmp_path):
    scene, rig, cam = shot
    user = json.loads((export.bone_maps.available_maps()["mixamo"]).read_text())
    user["name"] = "mine"
    user["body"]["left_wrist"] = {"bone": "LeftHand", "at": "tail"}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(user))
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path / "out"), 1, 1, W, H, bone_map=str(path)))
    assert result.bone_map_name == "mine"
    scene.frame_set(1)
    x, y, _ = expected_pixel(scene, cam, rig.matrix_world @ rig.pose.bones["LeftHand"].tail, W, H)
    assert tuple(result.track.frames[0].body[BODY_NAMES.index("left_wrist"), :2]) == pytest.approx((x, y), abs=1e-3)


@pytest.mark.parametrize("how", ["object", "collection", "excluded"])
def test_an_armature_blender_does_not_evaluate_is_refused(shot, tmp_path, how):
    scene, rig, cam = shot
    coll = bpy.data.collections.new("Rigs")
    scene.collection.children.link(coll)
    scene.collection.objects.unlink(rig)
    coll.objects.link(rig)
    if how == "object":
        rig.hide_viewport = True
    elif how == "collection":
        coll.hide_viewport = True
    else:
        bpy.context.view_layer.layer_collection.children["Rigs"].exclude = True
    with pytest.raises(NoArmature, match="disabled in viewports"):
        export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 5, W, H))


def test_an_armature_hidden_with_the_eye_icon_still_animates(shot, tmp_path):
    scene, rig, cam = shot
    rig.hide_set(True)
    result = export.export_shot(export.ExportRequest(scene, rig, str(tmp_path), 1, 5, W, H))
    wrist = BODY_NAMES.index("left_wrist")
    assert result.track.frames[0].body[wrist, 0] != pytest.approx(result.track.frames[-1].body[wrist, 0], abs=1.0)
