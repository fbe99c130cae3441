"""The shot plan: defaults taken from the scene, the output folder next to the .blend, the job message."""

import tempfile
from pathlib import Path

import pytest

from _addon_helpers import REFERENCE, addon_enabled, simple_shot_scene


@pytest.fixture
def shot(tmp_path):
    with addon_enabled():
        yield simple_shot_scene(tmp_path, frames=9)


def test_defaults_come_from_the_scene(shot):
    from blender_addon.shot import plan_shot

    shot.frame_start, shot.frame_end = 3, 11
    shot.render.fps, shot.render.fps_base = 30, 1.001
    plan = plan_shot(shot)
    assert (plan.frame_start, plan.frame_end, plan.frame_count) == (3, 11, 9)
    assert (plan.width, plan.height) == (64, 96) and plan.notes == []
    assert plan.armature_name == "Rig" and plan.shot_name == "Scene"
    assert plan.fps == pytest.approx(29.97, abs=1e-3)
    assert plan.reference == REFERENCE


def test_output_goes_next_to_the_saved_blend(shot, tmp_path):
    import bpy

    from blender_addon.shot import plan_shot

    shot.animate_anyone.output_dir = "//animate_anyone/"
    shot.animate_anyone.shot_name = "sh 010/a"
    (tmp_path / "film").mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "film" / "seq.blend"))
    plan = plan_shot(bpy.context.scene)
    assert plan.shot_dir == tmp_path / "film" / "animate_anyone" / "sh_010_a"
    assert plan.shot_dir.is_dir()
    assert plan.frames_dir == plan.shot_dir / "frames" and plan.poses_dir == plan.shot_dir / "poses"


def test_unsaved_blend_falls_back_to_the_temp_folder_with_a_note(shot):
    from blender_addon.shot import plan_shot

    shot.animate_anyone.output_dir = "//animate_anyone/"
    plan = plan_shot(shot)
    assert plan.shot_dir == Path(tempfile.gettempdir()) / "animate_anyone" / "Scene"
    assert plan.notes == [f"The .blend is not saved: output goes to {Path(tempfile.gettempdir()) / 'animate_anyone'}."]


def test_job_message_follows_the_protocol(shot):
    from blender_addon.errors import AddonError
    from blender_addon.shot import plan_shot

    s = shot.animate_anyone
    s.steps, s.guidance, s.seed, s.context_frames, s.context_overlap = 12, 2.5, 7, 16, 4
    plan = plan_shot(shot)
    with pytest.raises(AddonError, match="poses have not been exported"):
        plan.job()
    plan.pose_paths = [str(plan.poses_dir / f"pose_{i:05d}.png") for i in range(1, 10)]
    job = plan.job()
    assert job["type"] == "job" and job["id"].startswith("Scene-")
    assert job["poses"] == plan.pose_paths and job["output"] == str(plan.frames_dir)
    assert {k: job[k] for k in ("width", "height", "steps", "guidance", "seed", "context_frames", "context_overlap", "fps", "video")} == {
        "width": 64, "height": 96, "steps": 12, "guidance": 2.5, "seed": 7, "context_frames": 16, "context_overlap": 4, "fps": 24.0, "video": True}


def test_seamless_loop_goes_into_the_job_message(shot):
    """'Seamless Loop' (off by default) becomes the job's context_loop (docs/protocol.md)."""
    from blender_addon.shot import plan_shot

    for loop in (False, True):
        shot.animate_anyone.context_loop = loop
        plan = plan_shot(shot)
        plan.pose_paths = [str(plan.poses_dir / "pose_00001.png")]
        assert plan.job()["context_loop"] is loop
