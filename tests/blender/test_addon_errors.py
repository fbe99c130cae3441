"""Point 6 of the issue: each error a user will hit, triggered for real through the render
operator, yields its specific message (in the operator's result and the panel's state)."""

import os
import sys

import pytest

from _addon_helpers import addon_enabled, engine_python, set_engine_preferences, simple_shot_scene


@pytest.fixture
def shot(tmp_path):
    with addon_enabled():
        scene = simple_shot_scene(tmp_path)
        set_engine_preferences(engine_python())
        yield scene


def render_error(scene):
    """Run the render operator (blocking in background mode); return the panel's error state."""
    import bpy

    from blender_addon import runtime

    # An operator that reports an ERROR raises RuntimeError in a script, with the report as its text.
    with pytest.raises(RuntimeError) as info:
        bpy.ops.animate_anyone.render()
    progress = runtime.status[scene.name]
    assert progress.state == "error"
    assert f"{progress.message} {progress.hint}".strip() in str(info.value)
    return progress


def test_no_camera(shot):
    shot.camera = None
    p = render_error(shot)
    assert p.message == "Scene 'Scene' has no active camera."
    assert "add a camera and set it as the scene camera" in p.hint


def test_no_armature(shot):
    import bpy

    bpy.data.objects.remove(bpy.data.objects["Rig"])
    p = render_error(shot)
    assert p.message == "Scene 'Scene' has no armature to follow."


def test_several_armatures_and_none_chosen_are_named(shot):
    import bpy

    other = bpy.data.objects.new("Other Rig", bpy.data.armatures.new("Other"))
    shot.collection.objects.link(other)
    bpy.context.view_layer.objects.active = None
    p = render_error(shot)
    assert p.message == "Scene 'Scene' has several armatures (Other Rig, Rig) and none is chosen."


def test_reference_image_missing(shot, tmp_path):
    missing = tmp_path / "nowhere" / "hero.png"
    shot.animate_anyone.reference_path = str(missing)
    p = render_error(shot)
    assert p.message == f"The reference image {missing} does not exist."


def test_reference_image_unset(shot):
    shot.animate_anyone.reference_path = ""
    assert render_error(shot).message == "No reference image is set."


def test_reference_image_unreadable(shot, tmp_path):
    bad = tmp_path / "hero.png"
    bad.write_bytes(b"this is not a PNG at all" * 10)
    shot.animate_anyone.reference_path = str(bad)
    p = render_error(shot)
    assert p.message.startswith(f"The reference image {bad} cannot be read")
    assert "PNG or JPG" in p.hint


def test_resolution_not_a_multiple_of_8(shot):
    s = shot.animate_anyone
    s.size_source = 'CUSTOM'
    s.width, s.height = 130, 192
    p = render_error(shot)
    assert p.message == "'width' must be a multiple of 8 (got 130): use 128 or 136."
    assert "8x8-pixel" in p.hint


def test_render_resolution_is_rounded_not_refused(shot):
    from blender_addon.shot import plan_shot

    shot.render.resolution_x, shot.render.resolution_y = 130, 190
    plan = plan_shot(shot)
    assert (plan.width, plan.height) == (128, 192)
    assert plan.notes == ["Render size 130x190 rounded to 128x192 (multiples of 8)."]


def test_output_folder_not_writable(shot, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the output folder should be")
    shot.animate_anyone.output_dir = str(blocker / "renders")
    p = render_error(shot)
    assert p.message.startswith(f"The output folder {blocker / 'renders' / 'Scene'} is not writable")
    assert "Pick another folder" in p.hint


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_folder_read_only(shot, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    shot.animate_anyone.output_dir = str(folder)
    assert "is not writable" in render_error(shot).message


def test_engine_interpreter_missing(shot):
    from blender_addon.preferences import get_preferences

    get_preferences().engine_python = "/opt/no/such/python"
    p = render_error(shot)
    assert p.message == "The engine interpreter /opt/no/such/python does not exist."


def test_engine_interpreter_lacking_torch(shot):
    from blender_addon.preferences import get_preferences

    get_preferences().engine_python = sys.executable  # the bpy env's python: no torch
    p = render_error(shot)
    assert p.message.startswith(f"The engine interpreter {sys.executable} lacks torch")


def test_frame_range_empty(shot):
    s = shot.animate_anyone
    s.use_scene_range = False
    s.frame_start, s.frame_end = 10, 5
    assert render_error(shot).message == "The frame range 10-5 is empty."


def test_image_datablock_reference_is_saved_for_the_engine(shot, tmp_path):
    import bpy

    from blender_addon.shot import plan_shot

    s = shot.animate_anyone
    s.reference_source = 'IMAGE'
    image = bpy.data.images.new("Painted", 16, 16)
    image.pixels[:] = [0.2, 0.4, 0.6, 1.0] * 256
    s.reference_image = image
    plan = plan_shot(shot)
    assert plan.reference == plan.shot_dir / "reference.png" and plan.reference.is_file()
    s.reference_image = None
    with pytest.raises(Exception, match="No reference image is chosen."):
        plan_shot(shot)


@pytest.mark.slow  # the engine is started before the export (fail fast) and stopped with the add-on
def test_unmapped_bones_are_named(tmp_path):
    with addon_enabled():
        scene = simple_shot_scene(tmp_path, armature={"root": ((0, 0, 0), (0, 0, 1)), "arm_thing.L": ((0.2, 0, 1.4), (0.5, 0, 1.4))})
        set_engine_preferences(engine_python())
        p = render_error(scene)
    assert p.message.startswith("No bone map fits this armature")
    assert "missing bones:" in p.message
    missing = p.message.split("missing bones:", 1)[1]
    assert "LeftForeArm" in missing or "ORG-forearm" in missing  # the bones are named
    assert "bone map" in p.hint
    # the engine was started early (fail fast) and is stopped with the add-on: nothing left running


@pytest.mark.slow
def test_a_chosen_bone_map_that_does_not_fit_names_the_bones(shot):
    shot.animate_anyone.bone_map = "rigify"
    p = render_error(shot)
    assert p.message.startswith("The bone map 'rigify' does not fit this armature")
    assert "ORG-upper_arm.L" in p.message or "ORG-" in p.message
