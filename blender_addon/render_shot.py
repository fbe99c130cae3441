"""The whole render of one shot, shared by the UI operator and the command-line render:
plan (checks) -> skeleton maps -> engine job -> frames -> one VSE strip."""

from __future__ import annotations

from . import runtime, vse
from .errors import AddonError
from .preferences import engine_settings
from .render_task import JobProgress, RenderTask
from .shot import ShotPlan, export_poses, plan_shot


def start_render(context, scene, engine_overrides: dict | None = None, export_progress=None) -> RenderTask:
    """Check, export the skeleton maps (on this thread: it needs bpy), start or reuse the engine and
    queue the job. Returns the RenderTask (not finished: pump it). Raises AddonError."""
    if runtime.busy():
        raise AddonError("A render is already running.", "Wait for it to finish or cancel it.")
    plan = plan_shot(scene, context)
    # Start the engine first: a wrong interpreter fails fast, and the weights load while the maps are drawn.
    settings = engine_settings(context, **(engine_overrides or {}))
    engine = runtime.engine_for(settings, log_path=plan.shot_dir / "engine.log")
    export_poses(scene, plan, progress=export_progress)
    task = RenderTask(engine, plan.job())
    task.plan = plan
    runtime.tasks[scene.name] = task
    runtime.status[scene.name] = task.progress
    return task


def finish_render(scene, task: RenderTask, import_pose_preview: bool = False):
    """After `done`: import the frames as one strip (and optionally the skeleton maps). Returns the strip."""
    plan: ShotPlan = task.plan
    progress = task.progress
    if progress.state != "done":
        return None
    if len(progress.frames) != plan.frame_count:
        progress.state = "error"
        progress.message = f"The engine reported done but {len(progress.frames)} of {plan.frame_count} frames are in {plan.frames_dir}."
        progress.hint = "Render again (finished frames are kept)."
        return None
    strip = vse.import_image_sequence(scene, progress.frames, plan.frame_start, plan.strip_name)
    if import_pose_preview and plan.pose_paths:
        vse.import_image_sequence(scene, plan.pose_paths, plan.frame_start, f"{plan.strip_name} skeleton", lowest_channel=strip.channel + 1)
    progress.message += f"; strip '{strip.name}' on channel {strip.channel} at frame {plan.frame_start}"
    task.strip_name = strip.name
    return strip


def advance(context, scene_name: str) -> JobProgress | None:
    """One timer tick of the render operator: handle the queued engine events without waiting and,
    once the job is done, import the frames (into the sequencer's scene in 5.0 when it shows this one)."""
    import bpy

    task = runtime.tasks.get(scene_name)
    if task is None:
        return None
    progress = task.pump()
    if progress.state == "done" and not getattr(task, "imported", False):
        task.imported = True
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            progress.state, progress.message, progress.hint = "error", f"The scene '{scene_name}' is gone.", "The frames are on disk."
            return progress
        target = vse.sequencer_scene(context, scene) if scene == context.scene else scene
        try:
            finish_render(target, task, scene.animate_anyone.import_pose_preview)
        except (RuntimeError, ValueError) as exc:
            progress.state, progress.message = "error", f"Importing the frames failed: {exc}"
            progress.hint = "The frames are on disk; add them with Add > Image/Sequence."
    return progress


def fail(scene, exc: AddonError) -> JobProgress:
    """Record an error that happened before a task existed, for the panel."""
    progress = JobProgress(state="error", message=exc.message, hint=exc.hint, error=exc)
    runtime.status[scene.name] = progress
    return progress


def progress_printer(echo=print):
    """An `on_progress` for RenderTask.run_blocking that echoes one line per state, stage or step,
    e.g. `[ 98.5%] Decode, step 39/48, frames 39/48`. The frame count alone does not make a line:
    in the decode stage each `frame` event comes just before the `progress` event of the same step,
    whose line then shows the new count."""
    last = [None]

    def on_progress(p: JobProgress) -> None:
        if p.finished:
            return
        key = (p.state, p.stage, p.step)
        if key != last[0]:
            echo(f"[{p.factor() * 100:5.1f}%] {p.text()}")
            last[0] = key

    return on_progress


def render_blocking(context, scene, engine_overrides: dict | None = None, echo=print):
    """The command-line path (Blender -b runs no timers): returns (task, strip). Raises AddonError."""
    def export_progress(done, total):
        if done == total or done % max(1, total // 10) == 0:
            echo(f"skeleton maps {done}/{total}")

    task = start_render(context, scene, engine_overrides, export_progress=export_progress)
    plan = task.plan
    for note in plan.notes:
        echo(f"note: {note}")
    echo(f"shot '{plan.shot_name}': frames {plan.frame_start}-{plan.frame_end} at {plan.width}x{plan.height}, {len(plan.pose_paths)} skeleton maps in {plan.poses_dir}")
    progress = task.run_blocking(progress_printer(echo))
    if progress.state == "error":
        raise progress.error or AddonError(progress.message, progress.hint)
    if progress.state == "cancelled":
        raise progress.error
    strip = finish_render(scene, task, scene.animate_anyone.import_pose_preview)
    if strip is None:
        raise AddonError(progress.message, progress.hint)
    echo(progress.message)
    return task, strip
