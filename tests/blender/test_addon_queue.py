"""The render queue survives faults: a shot cancelled in the middle, an engine killed in the middle
of a shot; the others complete and a retry resumes. One real engine (random-tiny) for the queue."""

import os
import signal

import pytest

from _addon_helpers import addon_enabled, engine_python, marker_scene, set_engine_preferences


@pytest.fixture
def three_shots(tmp_path):
    """Shots 1 (frames 1-2), 2 (3-10) and 3 (11-12) from camera markers, in a saved project."""
    import bpy

    from blender_addon import runtime, shots

    project = tmp_path / "project"
    project.mkdir()
    with addon_enabled():
        marker_scene(project, ranges=((1, 2), (3, 10), (11, 12)))
        bpy.ops.wm.save_as_mainfile(filepath=str(project / "film.blend"))
        scene = bpy.context.scene
        scene.animate_anyone.output_dir = "//aa_renders/"
        set_engine_preferences(engine_python())
        shots.shots_from_markers(scene)
        yield scene, project / "aa_renders"
        runtime.reset()


def strips(scene):
    from blender_addon import vse

    return sorted(s.name for s in vse.strips_of(scene.sequence_editor)) if scene.sequence_editor else []


def test_queue_states_commands_and_summary():
    """The queue's bookkeeping alone: no double entries, cancel a waiting one, retry, clear."""
    from blender_addon.render_queue import RenderQueue

    queue = RenderQueue()
    a, b = queue.add("Scene", "A"), queue.add("Scene", "B")
    assert queue.add("Scene", "A") is a and len(queue.entries) == 2
    queue.cancel(b)
    assert (b.state, b.message, b.text()) == ("cancelled", "Cancelled before it started.", "B: cancelled")
    assert queue.summary() == "1 waiting, 1 cancelled" and queue.active
    queue.retry(b)
    assert b.state == "waiting" and b.text() == "B: waiting"
    queue.cancel_all()
    assert [e.state for e in queue.entries] == ["cancelled", "cancelled"] and not queue.active
    queue.clear_finished()
    assert queue.entries == []


def test_a_shot_that_cannot_start_fails_with_its_message_and_the_queue_goes_on():
    from blender_addon.errors import NoCamera
    from blender_addon.render_queue import RenderQueue

    queue = RenderQueue()
    for name in ("A", "B"):
        queue.add("Scene", name)

    def start(entry):
        if entry.shot_name == "A":
            raise NoCamera("Scene 'Scene' has no active camera.", "Add a camera.")
        raise KeyError("a bug")

    queue.run_blocking(start, lambda entry: None)
    a, b = queue.entries
    assert (a.state, a.message, a.hint) == ("error", "Scene 'Scene' has no active camera.", "Add a camera.")
    assert a.text() == "A: failed: Scene 'Scene' has no active camera."
    assert b.state == "error" and b.message == "KeyError: 'a bug'" and "bug in the add-on" in b.hint


@pytest.mark.slow
def test_cancelling_the_second_of_three_shots_leaves_the_first_and_third_complete(three_shots):
    import bpy

    from blender_addon import runtime
    from blender_addon.render_shot import queue_shots, run_queue_blocking

    scene, renders = three_shots
    second = scene.animate_anyone.shots["Shot 2"]
    second.override_sampling, second.steps = True, 200  # long enough to be caught denoising
    queue_shots(scene, ["Shot 1", "Shot 2", "Shot 3"])

    def on_entry(entry):
        p = entry.progress
        if entry.shot_name == "Shot 2" and entry.state == "running" and p is not None and p.stage == "denoise" and p.state == "running":
            runtime.queue.cancel(entry)

    entries = run_queue_blocking(bpy.context, on_entry=on_entry)
    assert [(e.shot_name, e.state) for e in entries] == [("Shot 1", "done"), ("Shot 2", "cancelled"), ("Shot 3", "done")]
    assert entries[1].message.startswith("Cancelled.") and "render again to resume" in entries[1].message
    assert strips(scene) == ["AA Shot_1", "AA Shot_3"]
    for n in (1, 3):
        assert len(list((renders / f"Shot_{n}" / "v001" / "frames").glob("frame_*.png"))) == 2
    assert runtime.queue.summary() == "2 done, 1 cancelled"


@pytest.mark.slow
def test_an_engine_crash_fails_that_shot_the_next_one_renders_and_retry_resumes(three_shots):
    import bpy

    from blender_addon import runtime
    from blender_addon.render_task import frames_on_disk
    from blender_addon.render_shot import queue_shots, run_queue_blocking

    scene, renders = three_shots
    second = scene.animate_anyone.shots["Shot 2"]
    second.override_output, second.decode_batch = True, 1  # frames written one by one
    queue_shots(scene, ["Shot 1", "Shot 2", "Shot 3"])
    killed = []

    def on_entry(entry):
        if entry.shot_name == "Shot 2" and entry.state == "running" and entry.task is not None and not killed:
            if frames_on_disk(entry.task.version_dir / "frames"):
                killed.append(entry.task.engine.pid)
                os.kill(entry.task.engine.pid, signal.SIGKILL)  # the engine dies while decoding shot 2

    entries = run_queue_blocking(bpy.context, on_entry=on_entry)
    assert killed
    assert [(e.shot_name, e.state) for e in entries] == [("Shot 1", "done"), ("Shot 2", "error"), ("Shot 3", "done")]
    failed = entries[1]
    assert failed.message.startswith("The engine stopped in the middle of the job (killed (often: the system ran out of memory)).")
    kept = frames_on_disk(renders / "Shot_2" / "v001" / "frames")
    assert 1 <= len(kept) < 8 and f"{len(kept)} frame(s) already written are kept" in failed.message
    assert "Render again to resume" in failed.hint
    assert entries[2].task.engine.pid != killed[0]  # shot 3 got a new engine
    kept_bytes = {p.name: p.read_bytes() for p in kept}
    assert "AA Shot_3" in strips(scene)

    runtime.queue.retry(failed)
    run_queue_blocking(bpy.context)
    assert (failed.state, failed.version) == ("done", "v001")
    assert failed.task.progress.resumed_frames >= len(kept)
    frames = frames_on_disk(renders / "Shot_2" / "v001" / "frames")
    assert len(frames) == 8 and all((renders / "Shot_2" / "v001" / "frames" / n).read_bytes() == b for n, b in kept_bytes.items())
    assert strips(scene) == ["AA Shot_1", "AA Shot_2", "AA Shot_3"]
    assert not (renders / "Shot_2" / "v002").exists()
    log = (renders / "engine.log").read_text()
    assert "(shot 'Shot_2' v001) failed: " in log and "(shot 'Shot_2' v001) done: 8/8 frames" in log
