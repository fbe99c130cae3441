"""The command-line render (render farms, tests): the same job as the button, blocking.

The end-to-end tests run the real engine subprocess (`random-tiny` weights) on the bundled rig:
rig -> skeleton maps -> engine -> frames + MP4 -> ONE strip in a saved .blend.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from _addon_helpers import REFERENCE, ROOT, addon_enabled, engine_python, set_engine_preferences, simple_shot_scene



def save_blend(path: Path, camera=True, reference=True):
    import bpy

    with addon_enabled():
        scene = simple_shot_scene(path.parent, camera=camera)
        if not reference:
            scene.animate_anyone.reference_path = ""
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def run_cli(args, script=False, timeout=600):
    entry = [str(ROOT / "blender_addon" / "command_line.py")] if script else ["-m", "blender_addon.command_line"]
    return subprocess.run([sys.executable, *entry, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_script_entry_point_reports_a_user_error_and_exits_2(tmp_path):
    """`blender -b f.blend --python blender_addon/command_line.py -- ...` runs the file as a script."""
    blend = save_blend(tmp_path / "shot.blend", camera=False)
    done = run_cli([blend, "--engine-python", engine_python()], script=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: Scene 'Scene' has no active camera." in done.stderr
    assert "hint: The skeleton maps show the rig as the camera sees it" in done.stderr


def test_command_line_rejects_a_missing_engine_interpreter(tmp_path):
    blend = save_blend(tmp_path / "shot.blend")
    done = run_cli([blend, "--engine-python", tmp_path / "nope" / "python"])
    assert done.returncode == 2
    assert f"error: The engine interpreter {tmp_path / 'nope' / 'python'} does not exist." in done.stderr


def test_context_loop_flags_set_the_seamless_loop(tmp_path):
    from blender_addon.command_line import apply_arguments, build_parser

    with addon_enabled():
        scene = simple_shot_scene(tmp_path)
        settings = scene.animate_anyone
        apply_arguments(scene, build_parser().parse_args([]))
        assert settings.context_loop is False
        apply_arguments(scene, build_parser().parse_args(["--context-loop"]))
        assert settings.context_loop is True
        apply_arguments(scene, build_parser().parse_args([]))  # not given: the saved setting stays
        assert settings.context_loop is True
        apply_arguments(scene, build_parser().parse_args(["--no-context-loop"]))
        assert settings.context_loop is False


def test_progress_lines_come_once_per_step(tmp_path):
    """The engine sends a `frame` event and then a `progress` event for every decoded frame: the
    command line prints one line for the pair, with the frame counted. Events are handled one at a
    time here (one per pump: the case that printed two lines per frame)."""
    from types import SimpleNamespace

    from blender_addon.render_shot import progress_printer
    from blender_addon.render_task import RenderTask

    engine = SimpleNamespace(hello={"type": "hello"}, send=lambda message: None)
    task = RenderTask(engine, {"type": "job", "id": "j", "poses": ["a.png", "b.png", "c.png"], "output": str(tmp_path)})

    def progress(stage, step, total, **extra):
        return {"type": "progress", "id": "j", "stage": stage, "step": step, "total": total, "frames_total": 3, **extra}

    events = [{"type": "accepted", "id": "j", "frames": 3, "resumed_frames": 0},
              progress("prepare", 0, 1), progress("reference", 1, 1), progress("denoise", 0, 2),
              progress("denoise", 1, 2, eta_s=4.0), progress("denoise", 2, 2, eta_s=0.0)]
    for index in (1, 2, 3):
        events += [{"type": "frame", "id": "j", "index": index, "path": str(tmp_path / f"frame_{index:05d}.png")},
                   progress("decode", index, 3, frames_done=index)]
    events.append({"type": "done", "id": "j", "frames": 3, "output": str(tmp_path)})
    lines = []
    on_progress = progress_printer(lines.append)
    for event in events:
        task.handle(event)
        on_progress(task.progress)
    assert lines == [
        "[  2.0%] Prepare, frames 0/3",  # the job is sent: the stage the engine starts with
        "[  6.0%] Reference, step 1/1, frames 0/3",
        "[  6.0%] Denoise, step 0/2, frames 0/3",
        "[ 49.0%] Denoise, step 1/2, frames 0/3, ETA 4s",
        "[ 92.0%] Denoise, step 2/2, frames 0/3, ETA 0s",
        "[ 94.7%] Decode, step 1/3, frames 1/3",
        "[ 97.3%] Decode, step 2/3, frames 2/3",
        "[100.0%] Decode, step 3/3, frames 3/3",
    ]


def rig_blend(tmp_path: Path) -> Path:
    """The bundled rig (rigs/bundled_rig.py: armature, camera, walk + wave) as a shot .blend whose
    shot settings point at the example reference image."""
    import bpy

    if str(ROOT / "rigs") not in sys.path:
        sys.path.insert(0, str(ROOT / "rigs"))
    import bundled_rig

    with addon_enabled():
        bundled_rig.build_bundled_rig_scene()
        bpy.context.scene.animate_anyone.reference_path = str(REFERENCE)
        path = tmp_path / "bundled_rig.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path


def open_result(path: Path):
    import bpy

    from blender_addon import vse

    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    scene = bpy.context.scene
    assert scene.sequence_editor is not None
    return scene, list(vse.strips_of(scene.sequence_editor))


@pytest.mark.slow
def test_command_line_render_of_the_bundled_rig_makes_frames_one_strip_and_a_video(tmp_path):
    import bpy

    blend = rig_blend(tmp_path)
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    start = bpy.context.scene.frame_start + 19  # a shot that does not begin at frame 1: the strip must follow it
    frames = 6
    out = tmp_path / "renders"
    done = run_cli([blend, "--engine-python", engine_python(), "--weights", "random-tiny", "--device", "cpu",
                    "--reference", REFERENCE, "--start", start, "--end", start + frames - 1, "--width", 64, "--height", 96,
                    "--steps", 2, "--shot", "demo", "--output", out, "--save", tmp_path / "result.blend"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"strip 'AA demo': {frames} frames from frame {start} on channel" in done.stdout
    rendered = sorted((out / "demo" / "v001" / "frames").glob("frame_*.png"))
    assert len(rendered) == frames
    assert (out / "demo" / "v001" / "frames" / "video.mp4").stat().st_size > 0
    # The job carried the keypoint track (the engine drew the maps); no maps were written without --skeleton-strip.
    from aa_contract.keypoints import read_track

    poses = out / "demo" / "v001" / "poses"
    track = read_track(poses / "keypoints.json")
    assert [f.frame for f in track.frames] == list(range(start, start + frames)) and (track.width, track.height) == (64, 96)
    assert all((f.body[1:14, 2] > 0).all() for f in track.frames)  # the rig's body is in view, not an empty track
    assert not list(poses.glob("pose_*.png"))

    scene, strips = open_result(tmp_path / "result.blend")
    assert len(strips) == 1
    strip = strips[0]
    assert strip.type == 'IMAGE' and strip.name == "AA demo"
    assert len(strip.elements) == frames
    assert [e.filename for e in strip.elements] == [p.name for p in rendered]
    assert int(strip.frame_start) == start and strip.frame_final_duration == frames


@pytest.mark.slow
def test_render_operator_on_the_bundled_rig_then_rerun_resumes_with_one_strip(tmp_path):
    import bpy

    from blender_addon import runtime, vse

    blend = rig_blend(tmp_path)
    with addon_enabled():
        bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
        set_engine_preferences(engine_python())
        scene = bpy.context.scene
        s = scene.animate_anyone
        s.reference_source, s.reference_path = 'FILE', str(REFERENCE)
        s.use_scene_range, s.frame_start, s.frame_end = False, scene.frame_start, scene.frame_start + 3
        s.size_source, s.width, s.height = 'CUSTOM', 64, 96
        s.steps, s.output_dir, s.shot_name = 2, str(tmp_path / "renders"), "op"
        assert bpy.ops.animate_anyone.render() == {'FINISHED'}
        first = runtime.status[scene.name]
        assert first.state == "done" and len(first.frames) == 4
        stamp = [Path(f).stat().st_mtime_ns for f in first.frames]
        assert bpy.ops.animate_anyone.render() == {'FINISHED'}  # same shot again: resumes, nothing recomputed
        again = runtime.status[scene.name]
        assert again.resumed_frames == 4
        assert [Path(f).stat().st_mtime_ns for f in again.frames] == stamp
        strips = {x.name: x for x in vse.strips_of(scene.sequence_editor)}
        assert list(strips) == ["AA op"] and len(strips["AA op"].elements) == 4
        s.import_pose_preview = True  # the skeleton maps as a second strip, on the channel above
        assert bpy.ops.animate_anyone.render() == {'FINISHED'}
        strips = {x.name: x for x in vse.strips_of(scene.sequence_editor)}
        assert sorted(strips) == ["AA op", "AA op skeleton"]
        assert strips["AA op skeleton"].channel == strips["AA op"].channel + 1
        assert len(strips["AA op skeleton"].elements) == 4 and int(strips["AA op skeleton"].frame_start) == scene.frame_start


@pytest.mark.slow
def test_the_ui_path_never_waits_on_the_engine(tmp_path):
    """What the render button does: start_render returns at once with the job queued, and each
    timer tick (advance) only handles events already there; the strip appears when done."""
    import time

    import bpy

    from blender_addon import runtime, vse
    from blender_addon.render_shot import advance, start_render

    with addon_enabled():
        scene = simple_shot_scene(tmp_path, frames=3)
        set_engine_preferences(engine_python())
        task = start_render(bpy.context, scene)
        assert task.progress.state in ("starting", "running") and runtime.busy()
        ticks, running_ticks, slowest = 0, 0, 0.0
        while True:
            t0 = time.perf_counter()
            progress = advance(bpy.context, scene.name)
            slowest = max(slowest, time.perf_counter() - t0)
            ticks += 1
            if progress.finished:
                break
            running_ticks += 1
            assert ticks < 5000
            time.sleep(0.05)
        assert progress.state == "done", progress.message
        assert running_ticks > 5  # the job ran across many ticks: Blender got control back in between
        assert slowest < 5.0  # no tick waited for the job (only the final import takes a moment)
        strips = list(vse.strips_of(vse.sequencer_scene(bpy.context, scene).sequence_editor))
        assert [s.name for s in strips] == ["AA Scene"] and len(strips[0].elements) == 3
        assert not runtime.busy()
