"""The shot list: shots from camera-bound markers or by hand, each shot's settings (its own where it
overrides, the scene's elsewhere), Render All Shots through one real engine (random-tiny), portable
strips, and the headless `--all-shots` command-line render."""

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from _addon_helpers import REFERENCE, ROOT, addon_enabled, engine_python, marker_scene, set_engine_preferences


@pytest.fixture
def markers(tmp_path):
    with addon_enabled():
        yield marker_scene(tmp_path)


@pytest.fixture
def engine_reset():
    yield
    from blender_addon import runtime

    runtime.reset()


def test_add_shots_from_markers_gives_one_shot_per_camera_marker(markers):
    import bpy

    markers.timeline_markers.new("no camera", frame=4)  # not a shot boundary: bound to no camera
    assert bpy.ops.animate_anyone.shots_from_markers() == {'FINISHED'}
    shots = markers.animate_anyone.shots
    assert [(s.name, s.frame_start, s.frame_end, s.camera.name) for s in shots] == [
        ("Shot 1", 1, 2, "Cam 1"), ("Shot 2", 3, 4, "Cam 2"), ("Shot 3", 5, 6, "Cam 3")]
    assert markers.animate_anyone.shot_index == 2
    # Again after moving a marker: the same shots, updated, not duplicated.
    markers.timeline_markers["Shot 3"].frame = 6
    assert bpy.ops.animate_anyone.shots_from_markers() == {'FINISHED'}
    assert [(s.name, s.frame_start, s.frame_end) for s in shots] == [("Shot 1", 1, 2), ("Shot 2", 3, 5), ("Shot 3", 6, 6)]


def test_no_camera_marker_is_explained_and_a_shot_can_be_added_by_hand(tmp_path):
    import bpy

    from _addon_helpers import simple_shot_scene

    with addon_enabled():
        scene = simple_shot_scene(tmp_path, frames=5)
        scene.timeline_markers.new("F_01", frame=1)
        with pytest.raises(RuntimeError, match="has no timeline marker bound to a camera"):
            bpy.ops.animate_anyone.shots_from_markers()
        assert bpy.ops.animate_anyone.shot_add() == {'FINISHED'}
        assert bpy.ops.animate_anyone.shot_add(name="Shot 001") == {'FINISHED'}
        shots = scene.animate_anyone.shots
        assert [(s.name, s.frame_start, s.frame_end, s.camera) for s in shots] == [("Shot 001", 1, 5, None), ("Shot 001.002", 1, 5, None)]
        assert bpy.ops.animate_anyone.shot_remove() == {'FINISHED'}
        assert [s.name for s in shots] == ["Shot 001"]


def test_a_shot_takes_its_own_values_and_the_scene_defaults_elsewhere(markers):
    """The shot's frames, camera, seed and overridden groups; the scene's settings for the rest.
    The shot's setting properties are the contract's (same defaults and limits as the scene's)."""
    from blender_addon import shots
    from blender_addon.contract import settings as contract
    from blender_addon.shot import plan_shot

    shots.shots_from_markers(markers)
    defaults = markers.animate_anyone
    defaults.steps, defaults.guidance, defaults.seed = 3, 2.0, 5
    item = defaults.shots["Shot 2"]
    for setting in contract.SETTINGS:
        if setting.addon_property:
            own, scene_prop = item.bl_rna.properties[setting.name], defaults.bl_rna.properties[setting.name]
            assert (own.default, getattr(own, "hard_min", None), getattr(own, "hard_max", None)) == (
                scene_prop.default, getattr(scene_prop, "hard_min", None), getattr(scene_prop, "hard_max", None))
    item.seed, item.steps, item.guidance, item.context_frames = 77, 9, 5.0, 8
    plan = plan_shot(markers, None, shots.settings_for(markers, item))
    assert (plan.shot_name, plan.frame_start, plan.frame_end, plan.camera_name) == ("Shot_2", 3, 4, "Cam 2")
    assert (plan.settings["seed"], plan.settings["steps"], plan.settings["guidance"], plan.settings["context_frames"]) == (77, 3, 2.0, 24)
    item.override_sampling, item.override_context = True, True
    plan = plan_shot(markers, None, shots.settings_for(markers, item))
    assert (plan.settings["seed"], plan.settings["steps"], plan.settings["guidance"], plan.settings["context_frames"]) == (77, 9, 5.0, 8)
    assert (plan.width, plan.height) == (32, 48)
    item.override_size, item.width, item.height = True, 64, 96
    assert (plan_shot(markers, None, shots.settings_for(markers, item)).settings["width"]) == 64
    item.reference_source, item.reference_path = 'FILE', "/no/such/hero.png"
    from blender_addon.errors import ReferenceImageError

    with pytest.raises(ReferenceImageError, match="/no/such/hero.png does not exist"):
        plan_shot(markers, None, shots.settings_for(markers, item))


def png_texts(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file."""
    data = Path(path).read_bytes()
    at, out = 8, {}
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"tEXt":
            key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return out


def _strip_files(strip) -> list[Path]:
    import bpy

    return [Path(bpy.path.abspath(strip.directory + e.filename)) for e in strip.elements]


@pytest.mark.slow
def test_render_all_shots_gives_one_strip_per_shot_and_the_project_folder_can_move(tmp_path, engine_reset):
    """3 camera markers -> 3 shots -> Render All (one engine) -> 3 strips at the shots' frames on
    channel 1 (the lowest free channel: shots follow each other like an edit), each from v001,
    with relative paths; the project folder moved and reopened, every strip's files resolve."""
    import bpy

    from blender_addon import runtime, vse

    project = tmp_path / "project"
    project.mkdir()
    with addon_enabled():
        marker_scene(project)
        bpy.ops.wm.save_as_mainfile(filepath=str(project / "film.blend"))
        scene = bpy.context.scene
        scene.animate_anyone.output_dir = "//aa_renders/"
        set_engine_preferences(engine_python())
        bpy.ops.animate_anyone.shots_from_markers()
        assert bpy.ops.animate_anyone.render_shots(which='ALL') == {'FINISHED'}
        entries = runtime.queue.entries
        assert [(e.shot_name, e.state, e.version) for e in entries] == [("Shot 1", "done", "v001"), ("Shot 2", "done", "v001"), ("Shot 3", "done", "v001")]
        strips = {s.name: s for s in vse.strips_of(scene.sequence_editor)}
        assert sorted(strips) == ["AA Shot_1", "AA Shot_2", "AA Shot_3"]
        for n, start in ((1, 1), (2, 3), (3, 5)):
            strip = strips[f"AA Shot_{n}"]
            assert (int(strip.frame_start), strip.frame_final_duration, strip.channel) == (start, 2, 1)
            assert strip.directory == f"//aa_renders/Shot_{n}/v001/frames/"
            assert all(p.is_file() for p in _strip_files(strip))
        # What each version records.
        from blender_addon import versions

        record = versions.read_record(project / "aa_renders" / "Shot_2" / "v001")
        assert record["state"] == "done" and record["frames"] == 2 and record["seed"] == 42
        assert record["settings"]["steps"] == 2 and record["engine"]["engine_version"] and record["engine"]["model"] == "random-tiny"
        job = (project / "aa_renders" / "Shot_2" / "v001" / "frames" / "job.json").read_text()
        assert '"engine_version"' in job and '"weights"' in job and '"seed": 42' in job
        texts = png_texts(project / "aa_renders" / "Shot_2" / "v001" / "frames" / "frame_00001.png")
        assert texts["Software"].startswith("aa_engine ")
        made = json.loads(texts["aa:job"])
        assert made["settings"]["seed"] == 42 and made["weights"] and made["engine_version"] and made["fingerprint"]
        umask = os.umask(0o022)
        os.umask(umask)
        keypoints = project / "aa_renders" / "Shot_2" / "v001" / "poses" / "keypoints.json"
        assert stat.S_IMODE(keypoints.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
        log = (project / "aa_renders" / "engine.log").read_text()
        assert log.count("add-on: job ") == 3 and "(shot 'Shot_3' v001) done: 2/2 frames" in log
        assert [s.versions[s.version_index].name for s in scene.animate_anyone.shots] == ["v001"] * 3
        bpy.ops.wm.save_mainfile()
        runtime.reset()

        moved = tmp_path / "elsewhere" / "project moved"
        moved.parent.mkdir()
        shutil.move(str(project), str(moved))
        bpy.ops.wm.open_mainfile(filepath=str(moved / "film.blend"), load_ui=False)
        strips = list(vse.strips_of(bpy.context.scene.sequence_editor))
        assert len(strips) == 3
        for strip in strips:
            files = _strip_files(strip)
            assert len(files) == 2 and all(p.is_file() and moved in p.parents for p in files), files


@pytest.mark.slow
def test_command_line_all_shots_renders_every_shot_headless(tmp_path):
    """`blender -b scene.blend --python blender_addon/command_line.py -- --all-shots`, as a farm
    task runs it (here: the bpy module running the same script file)."""
    import bpy

    from blender_addon import vse

    with addon_enabled():
        scene = marker_scene(tmp_path)
        from blender_addon import shots

        shots.shots_from_markers(scene)
        scene.animate_anyone.output_dir = str(tmp_path / "renders") + os.sep
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    done = subprocess.run([sys.executable, str(ROOT / "blender_addon" / "command_line.py"), str(tmp_path / "scene.blend"), "--all-shots",
                           "--engine-python", engine_python(), "--weights", "random-tiny", "--device", "cpu",
                           "--reference", REFERENCE, "--save", tmp_path / "out.blend"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for n, start in ((1, 1), (2, 3), (3, 5)):
        assert f"shot 'Shot {n}' v001: strip 'AA Shot_{n}', 2 frames from frame {start} on channel 1" in done.stdout
        assert len(list((tmp_path / "renders" / f"Shot_{n}" / "v001" / "frames").glob("frame_*.png"))) == 2
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "out.blend"), load_ui=False)
    strips = {s.name: s for s in vse.strips_of(bpy.context.scene.sequence_editor)}
    assert sorted(strips) == ["AA Shot_1", "AA Shot_2", "AA Shot_3"]
    assert all(all(p.is_file() for p in _strip_files(s)) for s in strips.values())

    # --shot NAME renders one shot of the list; a wrong name is named with the list.
    again = subprocess.run([sys.executable, "-m", "blender_addon.command_line", str(tmp_path / "scene.blend"), "--shot", "Shot 9",
                            "--engine-python", engine_python(), "--weights", "random-tiny"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2
    assert "error: Scene 'Scene' has no shot named 'Shot 9' (shots: Shot 1, Shot 2, Shot 3)." in again.stderr
    from _addon_helpers import tree_bytes

    v001 = tree_bytes(tmp_path / "renders" / "Shot_2" / "v001")
    seven = subprocess.run([sys.executable, "-m", "blender_addon.command_line", str(tmp_path / "out.blend"), "--shot", "Shot 2", "--seed", "7",
                            "--engine-python", engine_python(), "--weights", "random-tiny", "--device", "cpu", "--save", tmp_path / "out.blend"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert seven.returncode == 0, seven.stdout + seven.stderr
    assert "shot 'Shot 2' v002: strip 'AA Shot_2', 2 frames from frame 3 on channel 1" in seven.stdout
    assert tree_bytes(tmp_path / "renders" / "Shot_2" / "v001") == v001
    assert not (tmp_path / "renders" / "Shot_1" / "v002").exists()
