"""Versions (takes): every render with new inputs makes a new folder v001, v002... and never touches
an older one; the picker switches the shot's strip in place; an unchanged render resumes in its
version; 'Render Again with These Settings' and 'Delete Version'. Real engine (random-tiny)."""

import json
from pathlib import Path

import pytest

from _addon_helpers import addon_enabled, engine_python, marker_scene, set_engine_preferences, tree_bytes


def test_version_folders_are_numbered_and_never_reused(tmp_path):
    from blender_addon import versions
    from blender_addon.errors import AddonError

    root = tmp_path / "Shot_1"
    assert versions.version_dirs(root) == []
    first = versions.new_version_dir(root)
    second = versions.new_version_dir(root)
    (root / "v010").mkdir()
    (root / "notes").mkdir()
    assert [p.name for p in versions.version_dirs(root)] == ["v001", "v002", "v010"]
    assert versions.new_version_dir(root).name == "v011"
    assert (first.name, second.name) == ("v001", "v002")
    with pytest.raises(AddonError, match="is not a version folder of this add-on"):
        versions.delete_version(root / "notes")
    with pytest.raises(AddonError, match="is not a version folder"):
        versions.delete_version(first)  # no version.json: not ours to delete
    assert first.is_dir()


def test_inputs_key_ignores_settings_that_do_not_change_frames_and_the_tracks_source(tmp_path):
    from _addon_helpers import REFERENCE
    from blender_addon import versions
    from blender_addon.contract import settings

    poses = tmp_path / "poses"
    poses.mkdir()
    (poses / "keypoints.json").write_text(json.dumps({"format": "aa-keypoints/1", "frames": [[1, 2]], "source": {"blend_file": "/a/film.blend"}}))
    base = settings.defaults()
    key = versions.inputs_key(base, REFERENCE, poses, 1, 4, "random-tiny")
    assert versions.inputs_key(dict(base, decode_batch=1, fps=30.0), REFERENCE, poses, 1, 4, "random-tiny") == key
    (poses / "keypoints.json").write_text(json.dumps({"format": "aa-keypoints/1", "frames": [[1, 2]], "source": {"blend_file": "/b/moved.blend"}}))
    assert versions.inputs_key(base, REFERENCE, poses, 1, 4, "random-tiny") == key
    assert versions.inputs_key(dict(base, seed=7), REFERENCE, poses, 1, 4, "random-tiny") != key
    assert versions.inputs_key(base, REFERENCE, poses, 1, 5, "random-tiny") != key
    assert versions.inputs_key(base, REFERENCE, poses, 1, 4, "/weights/other") != key


@pytest.fixture
def one_shot(tmp_path):
    """A saved project with one shot (frames 1-3) and the engine preferences set."""
    import bpy

    from blender_addon import runtime, shots

    project = tmp_path / "project"
    project.mkdir()
    with addon_enabled():
        scene = marker_scene(project, ranges=((1, 3),))
        bpy.ops.wm.save_as_mainfile(filepath=str(project / "film.blend"))
        scene = bpy.context.scene
        scene.animate_anyone.output_dir = "//aa_renders/"
        set_engine_preferences(engine_python())
        shots.shots_from_markers(scene)
        yield scene, project / "aa_renders" / "Shot_1"
        runtime.reset()


def render(scene):
    import bpy

    from blender_addon import runtime

    assert bpy.ops.animate_anyone.render_shots(which='ACTIVE') == {'FINISHED'}
    entry = runtime.queue.entries[-1]
    assert entry.state == "done", entry.message
    return entry


def strip_folder(scene) -> Path:
    import bpy

    from blender_addon import vse

    strip = vse.find_strip(scene, "AA Shot_1")
    return Path(bpy.path.abspath(strip.directory)).resolve(), strip


@pytest.mark.slow
def test_a_second_render_makes_v002_and_leaves_v001_byte_for_byte(one_shot):
    import bpy

    scene, root = one_shot
    item = scene.animate_anyone.shots["Shot 1"]
    first = render(scene)
    assert first.version == "v001"
    v001 = tree_bytes(root / "v001")
    assert sum(1 for name in v001 if name.startswith("frames/frame_")) == 3

    item.seed = 7  # new inputs: a new version
    second = render(scene)
    assert second.version == "v002"
    assert tree_bytes(root / "v001") == v001
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["v001", "v002"]
    assert json.loads((root / "v002" / "version.json").read_text())["seed"] == 7
    assert [v.name for v in item.versions] == ["v001", "v002"] and item.version_index == 1

    # The picker switches the strip, which keeps the place and channel the editor gave it.
    folder, strip = strip_folder(scene)
    assert folder == (root / "v002" / "frames").resolve()
    strip.channel, strip.frame_start = 4, 11
    item.version_index = 0
    folder, strip = strip_folder(scene)
    assert folder == (root / "v001" / "frames").resolve() and strip.directory == "//aa_renders/Shot_1/v001/frames/"
    assert (strip.channel, int(strip.frame_start), strip.frame_final_duration, len(strip.elements)) == (4, 11, 3, 3)
    item.version_index = 1
    assert strip_folder(scene)[0] == (root / "v002" / "frames").resolve()
    assert (strip.channel, int(strip.frame_start)) == (4, 11)

    # Unchanged inputs: no new version; the engine resumes in v002 and rewrites nothing.
    v002 = {k: v for k, v in tree_bytes(root / "v002").items() if k.startswith("frames/frame_")}
    again = render(scene)
    assert again.version == "v002" and again.task.progress.resumed_frames == 3
    assert {k: v for k, v in tree_bytes(root / "v002").items() if k.startswith("frames/frame_")} == v002
    assert [v.name for v in item.versions] == ["v001", "v002"]

    # 'Render Again with These Settings' on v001 (seed 42): its inputs are v001's, so v001 resumes.
    item.version_index = 0
    assert bpy.ops.animate_anyone.version_render_again() == {'FINISHED'}
    from blender_addon import runtime

    entry = runtime.queue.entries[-1]
    assert (entry.state, entry.version, entry.task.progress.resumed_frames) == ("done", "v001", 3)
    frames = lambda tree: {k: v for k, v in tree.items() if k.startswith(("frames/frame_", "poses/"))}  # noqa: E731
    assert frames(tree_bytes(root / "v001")) == frames(v001)  # (the engine rewrote its job.json: a new job id)
    assert item.seed == 7  # the shot's own settings are left as they are

    # Delete v002: its folder goes, the list and the strip show v001.
    item.version_index = 1
    assert bpy.ops.animate_anyone.version_delete() == {'FINISHED'}
    assert not (root / "v002").exists() and (root / "v001").is_dir()
    assert [v.name for v in item.versions] == ["v001"]
    assert strip_folder(scene)[0] == (root / "v001" / "frames").resolve()


@pytest.mark.slow
def test_frames_appear_in_the_strip_while_the_shot_renders(one_shot):
    """The UI path (a timer tick = queue_step): the strip grows as frames are written and the
    panel's live preview names the latest one, before the job is done."""
    import time

    import bpy

    from blender_addon import runtime, vse
    from blender_addon.render_shot import queue_shots, queue_step

    scene, root = one_shot
    item = scene.animate_anyone.shots["Shot 1"]
    item.frame_end = 10  # 10 frames decoded one by one: many ticks see some, not all
    item.override_output, item.decode_batch = True, 1
    queue_shots(scene, ["Shot 1"])
    seen = set()
    deadline = time.monotonic() + 300
    while runtime.queue.active and time.monotonic() < deadline:
        entry = queue_step(bpy.context)
        strip = vse.find_strip(scene, "AA Shot_1")
        if entry is not None and entry.state == "running" and strip is not None:
            seen.add((len(strip.elements), bool(entry.progress.latest_frame)))
        time.sleep(0.02)
    assert runtime.queue.entries[0].state == "done"
    partial = sorted({n for n, _ in seen})
    assert len(partial) >= 2 and partial[0] < 10, seen  # the strip grew while the shot ran
    assert any(latest for _, latest in seen)
    strip = vse.find_strip(scene, "AA Shot_1")
    assert len(strip.elements) == 10 and strip.frame_final_duration == 10 and int(strip.frame_start) == 1
