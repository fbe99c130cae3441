"""Pose rescaling in the add-on (docs/pose_rescaling.md): the shot settings' 'Rescale to Reference',
the render path (plan_shot + export_poses), its errors and its command-line flags, on the bundled
rig (rigs/bundled_rig.py) with a reference character made by lengthening its limbs at frame 0."""

import os
import subprocess
import sys

import numpy as np
import pytest

from _addon_helpers import REFERENCE, ROOT, addon_enabled
from rig_fixture import bundled_rig

REFERENCE_FRAME = 0  # outside the shot (frames 1-6)
LONGER = {"upper_arm.L": 1.3, "upper_arm.R": 1.3, "shin.L": 1.25, "shin.R": 1.25}


@pytest.fixture
def rig_shot(tmp_path):
    """The bundled rig's first 6 frames at 256x384; at frame 0 the rig stands in its frame-1 pose
    with 30% longer arms and 25% longer shins: the reference character."""
    import bpy

    with addon_enabled():
        rig, _camera = bundled_rig.build_bundled_rig_scene()
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = 1, 6
        scene.render.resolution_percentage = 50
        for name, factor in LONGER.items():
            bone = rig.pose.bones[name]
            bone.scale = (factor, factor, factor)
            bone.keyframe_insert("scale", frame=REFERENCE_FRAME)
            bone.scale = (1.0, 1.0, 1.0)
            bone.keyframe_insert("scale", frame=1)
        scene.frame_set(1)
        settings = scene.animate_anyone
        settings.reference_path = str(REFERENCE)
        settings.output_dir = str(tmp_path / "out") + os.sep
        settings.write_skeleton_maps = True  # the tests compare the maps the rescaled tracks draw
        yield scene, rig


def render_poses(scene):
    """What the render button does before the job: plan (checks) and the skeleton maps."""
    from blender_addon.shot import export_poses, plan_shot

    plan = plan_shot(scene)
    export_poses(scene, plan)
    return plan


def limb_lengths(body):
    from blender_addon.skeleton.rescale import BODY_TREE

    return np.array([np.linalg.norm(body[child, :2] - body[parent, :2]) for parent, child in BODY_TREE])


def map_bytes(paths):
    return [open(p, "rb").read() for p in paths]


@pytest.mark.parametrize("align_frame", [None, 4])
def test_rescaled_limbs_match_the_reference_pose_at_the_alignment_frame(rig_shot, tmp_path, align_frame):
    from blender_addon.skeleton.export import ExportRequest, export_shot
    from blender_addon.skeleton.track import draw_track, read_track

    scene, rig = rig_shot
    unscaled = map_bytes(render_poses(scene).pose_paths)
    settings = scene.animate_anyone
    settings.rescale, settings.reference_pose_frame = True, REFERENCE_FRAME
    if align_frame is not None:
        settings.align_first_frame, settings.align_frame = False, align_frame
    scene.frame_set(3)
    plan = render_poses(scene)
    assert scene.frame_current == 3
    assert any("rescaled" in note for note in plan.notes)

    rescaled = read_track(plan.poses_dir / "keypoints.json")
    driving = read_track(plan.poses_dir / "keypoints_driving.json")
    reference = read_track(plan.poses_dir / "keypoints_reference.json")
    # The reference frame projected by the plain export, independently of the rescaling code.
    expected = export_shot(ExportRequest(scene, rig, str(tmp_path / "reference"), REFERENCE_FRAME, REFERENCE_FRAME, plan.width, plan.height))
    expected_body = expected.track.frames[0].body
    assert (expected_body[:, 2] > 0).all()
    np.testing.assert_allclose(reference.frames[0].body, expected_body, atol=1e-3)

    index = 0 if align_frame is None else align_frame - plan.frame_start
    assert rescaled.frames[index].frame == (align_frame or plan.frame_start)
    reference_lengths = limb_lengths(expected_body)
    driving_lengths = limb_lengths(driving.frames[index].body)
    assert np.abs(reference_lengths - driving_lengths).max() > 10  # the reference really has other proportions
    np.testing.assert_allclose(limb_lengths(rescaled.frames[index].body), reference_lengths, atol=0.5)
    np.testing.assert_allclose(rescaled.frames[index].body[1, :2], expected_body[1, :2], atol=0.5)  # the neck stands where the reference's does

    # The maps are the rescaled track drawn by the one drawing implementation, and differ from the unscaled maps.
    maps = map_bytes(plan.pose_paths)
    direct = export_shot(ExportRequest(scene, rig, str(tmp_path / "direct"), 1, 6, plan.width, plan.height, rescale=plan.rescale, write_maps=True))
    assert maps == map_bytes(draw_track(direct.track, tmp_path / "redrawn"))
    assert len(maps) == len(unscaled) == 6
    assert all(a != b for a, b in zip(maps, unscaled))


def test_a_keypoints_file_gives_the_same_poses_as_the_rig_pose(rig_shot, tmp_path):
    from blender_addon.skeleton.export import ExportRequest, export_shot
    from blender_addon.skeleton.track import read_track

    scene, rig = rig_shot
    settings = scene.animate_anyone
    settings.rescale, settings.reference_pose_frame = True, REFERENCE_FRAME
    from_rig = read_track(render_poses(scene).poses_dir / "keypoints.json")
    # A reference track made outside the shot, at another size (it is brought to the shot's grid).
    hero = export_shot(ExportRequest(scene, rig, str(tmp_path / "hero"), REFERENCE_FRAME, REFERENCE_FRAME, 512, 768)).track_path
    settings.rescale_source, settings.reference_keypoints = 'FILE', str(hero)
    plan = render_poses(scene)
    from_file = read_track(plan.poses_dir / "keypoints.json")
    for a, b in zip(from_rig.frames, from_file.frames):
        np.testing.assert_allclose(a.body, b.body, atol=0.01)
    assert read_track(plan.poses_dir / "keypoints_reference.json").source["file"] == str(hero)
    assert from_file.source["rescaled_to"]["reference"]["file"] == str(hero)


def test_rescaling_off_draws_the_same_maps_as_the_plain_export(rig_shot, tmp_path):
    from blender_addon.skeleton.export import ExportRequest, export_shot

    scene, rig = rig_shot
    plain = export_shot(ExportRequest(scene, rig, str(tmp_path / "plain"), 1, 6, 256, 384, write_maps=True))
    settings = scene.animate_anyone
    # Sub-settings filled in but the option off: ignored.
    settings.rescale_source, settings.reference_keypoints = 'FILE', str(tmp_path / "no_such.json")
    plan = render_poses(scene)
    assert map_bytes(plan.pose_paths) == map_bytes(plain.map_paths)
    assert (plan.poses_dir / "keypoints.json").read_bytes() == plain.track_path.read_bytes()
    # After a rescaled render, switching it off brings back the plain maps and drops the extra tracks.
    settings.rescale, settings.rescale_source = True, 'FRAME'
    render_poses(scene)
    assert (plan.poses_dir / "keypoints_driving.json").is_file()
    settings.rescale = False
    plan = render_poses(scene)
    assert map_bytes(plan.pose_paths) == map_bytes(plain.map_paths)
    assert not (plan.poses_dir / "keypoints_driving.json").exists() and not (plan.poses_dir / "keypoints_reference.json").exists()


@pytest.mark.parametrize("case", ["missing", "unset", "folder", "not_json", "not_a_track", "no_neck"])
def test_a_bad_keypoints_file_is_a_user_error(rig_shot, tmp_path, case):
    from blender_addon.errors import UserError
    from blender_addon.shot import plan_shot
    from blender_addon.skeleton.errors import BadTrack

    scene, _rig = rig_shot
    settings = scene.animate_anyone
    settings.rescale, settings.rescale_source = True, 'FILE'
    path = tmp_path / "hero.json"
    expected = {
        "missing": f"The reference keypoints file {path} does not exist.",
        "unset": "Rescaling to a keypoints file, but no keypoints file is set.",
        "folder": f"The reference keypoints file {tmp_path} is not a file.",
        "not_json": f"The keypoint track {path} is not valid JSON (line 1, column 1: Expecting value).",
        "not_a_track": f"The keypoint track {path} is not valid: \"format\" must be \"aa-keypoints/1\", not None.",
        "no_neck": f"The reference keypoints in {path} have no neck in their first frame",
    }[case]
    settings.reference_keypoints = {"unset": "", "folder": str(tmp_path)}.get(case, str(path))
    if case == "not_json":
        path.write_text("nope")
    elif case == "not_a_track":
        path.write_text("{}")
    elif case == "no_neck":
        body = ", ".join(["null"] * 18)
        path.write_text('{"format": "aa-keypoints/1", "width": 64, "height": 96, "frames": [{"frame": 1, "body": [%s]}]}' % body)
    with pytest.raises(BadTrack) as caught:
        render_poses(scene)
    assert isinstance(caught.value, UserError)  # the contract's error: what the operators and the command line report
    assert caught.value.message.startswith(expected) and caught.value.hint
    if case in ("missing", "unset", "folder"):
        assert "'Keypoints File'" in caught.value.hint
        with pytest.raises(BadTrack):
            plan_shot(scene)  # found by the checks, before the engine starts


def test_a_reference_frame_with_the_rig_out_of_view_is_a_user_error(rig_shot):
    from blender_addon.skeleton.errors import NothingInView

    scene, rig = rig_shot
    rig.keyframe_insert("location", frame=6)
    rig.location = (0.0, -20.0, 0.0)  # behind the camera
    rig.keyframe_insert("location", frame=100)
    settings = scene.animate_anyone
    settings.rescale, settings.reference_pose_frame = True, 100
    scene.frame_set(2)
    with pytest.raises(NothingInView, match="At the reference pose frame 100, the body of 'OpenPoseRig' is not in the view") as caught:
        render_poses(scene)
    assert "'Reference Pose Frame'" in caught.value.hint
    assert scene.frame_current == 2


def test_an_alignment_frame_outside_the_shot_is_a_user_error(rig_shot):
    from blender_addon.skeleton.errors import BadFrameRange

    scene, _rig = rig_shot
    settings = scene.animate_anyone
    settings.rescale, settings.align_first_frame, settings.align_frame = True, False, 40
    with pytest.raises(BadFrameRange, match=r"The alignment frame 40 is outside the shot's frames 1-6\."):
        render_poses(scene)


def test_command_line_flags_set_the_shot_settings(rig_shot, tmp_path):
    from blender_addon.command_line import apply_arguments, build_parser
    from blender_addon.errors import AddonError

    scene, _rig = rig_shot
    settings = scene.animate_anyone
    apply_arguments(scene, build_parser().parse_args(["--rescale-frame", "0", "--align-frame", "3"]))
    assert (settings.rescale, settings.rescale_source, settings.reference_pose_frame) == (True, 'FRAME', 0)
    assert (settings.align_first_frame, settings.align_frame) == (False, 3)
    apply_arguments(scene, build_parser().parse_args(["--rescale-keypoints", "hero.json"]))
    assert (settings.rescale, settings.rescale_source, settings.reference_keypoints) == (True, 'FILE', "hero.json")
    apply_arguments(scene, build_parser().parse_args(["--no-rescale"]))
    assert not settings.rescale
    with pytest.raises(AddonError, match="--align-frame only applies when the poses are rescaled"):
        apply_arguments(scene, build_parser().parse_args(["--align-frame", "3"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rescale-frame", "0", "--rescale-keypoints", "hero.json"])


def test_command_line_render_reports_a_missing_keypoints_file(rig_shot, tmp_path):
    import bpy

    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    missing = tmp_path / "hero.json"
    done = subprocess.run([sys.executable, "-m", "blender_addon.command_line", str(blend), "--rescale-keypoints", str(missing),
                           "--engine-python", sys.executable], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"error: The reference keypoints file {missing} does not exist." in done.stderr
    assert "hint: Pick an aa-keypoints/1 track" in done.stderr
    assert "Traceback" not in done.stderr
