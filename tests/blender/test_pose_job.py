"""The render path's pose export (shot.py export_poses): it writes only the keypoint track and the
job carries it as `keypoints`; skeleton maps are written only with 'Write Skeleton Maps' or the
'Skeleton Preview Strip', and are then the drawing of that track."""

import os

import pytest

from _addon_helpers import REFERENCE, addon_enabled
from rig_fixture import bundled_rig


@pytest.fixture
def rig_shot(tmp_path):
    """The bundled rig's first 4 frames at 256x384 (render size at 50%)."""
    import bpy

    with addon_enabled():
        bundled_rig.build_bundled_rig_scene()
        scene = bpy.context.scene
        scene.frame_start, scene.frame_end = 1, 4
        scene.render.resolution_percentage = 50
        settings = scene.animate_anyone
        settings.reference_path = str(REFERENCE)
        settings.output_dir = str(tmp_path / "out") + os.sep
        yield scene


def export(scene):
    from blender_addon.shot import export_poses, plan_shot

    plan = plan_shot(scene)
    export_poses(scene, plan)
    return plan


def test_the_job_carries_the_keypoint_track_and_no_maps_are_written(rig_shot):
    from aa_contract import protocol
    from aa_contract.keypoints import read_track

    plan = export(rig_shot)
    assert plan.pose_paths == [] and sorted(p.name for p in plan.poses_dir.iterdir()) == ["keypoints.json"]
    job = plan.job()
    assert job["keypoints"] == plan.keypoints_path == str(plan.poses_dir / "keypoints.json") and "poses" not in job
    request = protocol.parse_job(job)  # what the engine checks first
    assert request.keypoints == plan.keypoints_path and request.poses is None
    track = read_track(plan.keypoints_path)
    assert [f.frame for f in track.frames] == [1, 2, 3, 4] and (track.width, track.height) == (plan.width, plan.height)


@pytest.mark.parametrize("option", ["write_skeleton_maps", "import_pose_preview"])
def test_maps_are_written_on_request_and_are_the_tracks_drawing(rig_shot, tmp_path, option):
    from aa_contract.keypoints import read_track
    from blender_addon.skeleton.track import draw_track

    setattr(rig_shot.animate_anyone, option, True)
    plan = export(rig_shot)
    assert [os.path.basename(p) for p in plan.pose_paths] == [f"pose_{i:05d}.png" for i in range(1, 5)]
    assert "keypoints" in plan.job() and "poses" not in plan.job()  # the engine still gets the track
    redrawn = draw_track(read_track(plan.keypoints_path), tmp_path / "redrawn")
    assert [open(p, "rb").read() for p in plan.pose_paths] == [p.read_bytes() for p in redrawn]
    # Switched off again: the next export leaves no maps of the earlier one behind.
    setattr(rig_shot.animate_anyone, option, False)
    plan = export(rig_shot)
    assert plan.pose_paths == [] and not list(plan.poses_dir.glob("pose_*.png"))

