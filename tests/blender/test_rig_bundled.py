"""The bundled rig: built by its script, bones on the OpenPose keypoints, a demo motion that exports."""

import subprocess
import sys

import numpy as np
import pytest

from rig_fixture import ROOT, bundled_rig


@pytest.fixture
def rig_scene(empty_blend):
    rig, camera = bundled_rig.build_bundled_rig_scene(empty_blend)
    return empty_blend, rig, camera


def _keypoints_3d(rig, resolved):
    """World positions of the 18 body keypoints of `rig` at the current frame, through the bone map."""
    from aa_contract.keypoints import BODY_NAMES

    points = {}
    for i, name in enumerate(BODY_NAMES):
        point = resolved.points[i]
        if point.midpoint is None:
            bone = rig.pose.bones[point.bone]
            points[name] = np.array(rig.matrix_world @ (bone.head if point.at == "head" else bone.tail))
    for i, name in enumerate(BODY_NAMES):
        point = resolved.points[i]
        if point.midpoint is not None:
            a, b = (BODY_NAMES[j] for j in point.midpoint)
            points[name] = (points[a] + points[b]) / 2
    return points


def test_the_bundled_map_is_detected_with_every_keypoint(rig_scene):
    from blender_addon.skeleton.export import detect_bone_map

    _, rig, _ = rig_scene
    bone_map, missing = detect_bone_map(rig)
    assert bone_map.name == "bundled"
    assert missing == []


def test_rest_pose_bones_land_exactly_on_the_keypoints(rig_scene):
    from blender_addon.skeleton.export import resolve_for_armature

    scene, rig, _ = rig_scene
    for bone in rig.pose.bones:  # the rest pose: no rotation, no offset
        bone.rotation_euler = (0.0, 0.0, 0.0)
        bone.location = (0.0, 0.0, 0.0)
    bpy_update(scene)
    points = _keypoints_3d(rig, resolve_for_armature(rig, "bundled"))
    for name, expected in bundled_rig.KEYPOINTS.items():
        assert np.allclose(points[name], expected, atol=1e-6), name


def bpy_update(scene):
    import bpy

    bpy.context.view_layer.update()
    scene.frame_current = scene.frame_current


def test_demo_motion_moves_wrists_and_ankles_and_stays_in_view(rig_scene, tmp_path):
    from blender_addon.skeleton.export import ExportRequest, export_shot

    scene, rig, _ = rig_scene
    assert (scene.frame_start, scene.frame_end) == (bundled_rig.FRAME_START, bundled_rig.FRAME_END)
    result = export_shot(ExportRequest(scene, rig, str(tmp_path / "maps"), scene.frame_start, scene.frame_end, 128, 192, write_maps=True))
    assert len(result.map_paths) == scene.frame_end - scene.frame_start + 1
    assert result.bone_map_name == "bundled"
    assert not result.missing_keypoints  # every keypoint in view in every frame
    body = np.stack([frame.body for frame in result.track.frames])
    assert body.shape == (48, 18, 3) and (body[..., 2] > 0).all()
    for joint in (4, 7, 10, 13):  # wrists and ankles travel in the image
        travel = np.linalg.norm(body[:, joint, :2] - body[0, joint, :2], axis=1).max()
        assert travel > 5, joint
    left_wrist_height = body[:, 7, 1]
    assert left_wrist_height[30:].min() < body[30:, 0, 1].min()  # the wave lifts the left hand above the nose


def test_demo_maps_are_non_empty_and_change_every_frame(rig_scene, tmp_path):
    from blender_addon.skeleton.export import ExportRequest, export_shot
    from blender_addon.skeleton.track import read_track

    scene, rig, _ = rig_scene
    result = export_shot(ExportRequest(scene, rig, str(tmp_path / "maps"), 1, 12, 128, 192, write_maps=True))
    maps = [_read_png(p) for p in result.map_paths]
    assert all(m.any() for m in maps)
    assert all(not np.array_equal(a, b) for a, b in zip(maps, maps[1:]))
    assert len(read_track(result.track_path).frames) == 12


def _read_png(path):
    import bpy

    image = bpy.data.images.load(str(path))
    pixels = np.array(image.pixels[:]).reshape(image.size[1], image.size[0], image.channels)
    bpy.data.images.remove(image)
    return pixels[..., :3]


@pytest.mark.slow
def test_the_script_builds_a_blend_from_the_command_line(tmp_path):
    out = tmp_path / "rig.blend"
    done = subprocess.run([sys.executable, str(ROOT / "rigs" / "bundled_rig.py"), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and out.stat().st_size > 10_000
