"""The whole render of one shot, shared by the UI operators, the queue and the command-line render:
plan (checks) -> skeleton maps -> version folder -> engine job -> frames -> one VSE strip."""

from __future__ import annotations

import time
from pathlib import Path

from . import runtime, shots, versions, vse
from .errors import AddonError
from .preferences import engine_settings
from .render_task import JobProgress, RenderTask, frames_on_disk
from .shot import ShotPlan, export_poses, plan_shot

ENGINE_LOG = "engine.log"


def begin_shot(context, scene, item=None, engine_overrides: dict | None = None, export_progress=None,
               settings_from: dict | None = None) -> RenderTask:
    """Plan a shot (`item` of the shot list, or None for the scene's single shot), start or reuse
    the engine, write the skeleton maps, choose the version folder and send the job.
    `settings_from` (versions.recorded_inputs): render with a version's settings and reference.
    Returns the RenderTask (not finished: pump it). Raises AddonError."""
    settings = shots.settings_for(scene, item)
    plan = plan_shot(scene, context, settings)
    if settings_from:
        plan.settings = dict(settings_from["settings"])
        if settings_from.get("reference") is not None:
            plan.reference = Path(settings_from["reference"])
    shot_root = plan.shot_dir
    # Start the engine first: a wrong interpreter fails fast, and the weights load while the maps are
    # drawn. One engine serves every shot (its log is next to the shot folders).
    engine_conf = engine_settings(context, **(engine_overrides or {}))
    engine = runtime.engine_for(engine_conf, log_path=shot_root.parent / ENGINE_LOG)
    staging = versions.staging_dir(shot_root)
    plan.shot_dir = staging
    try:
        export_poses(scene, plan, settings=settings, progress=export_progress)
        folder, reused = versions.place(plan, shot_root, staging, engine_conf.address or engine_conf.weights or "default", settings_from)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    if reused:
        plan.notes.append(f"Same inputs as {folder.name}: rendering into it again (the engine resumes; finished frames are kept).")
    task = RenderTask(engine, plan.job(), plan=plan, version_dir=folder, item_name=item.name if item is not None else None)
    versions.update_record(folder, state="rendering", job_id=task.job_id,
                           engine={"kind": "remote" if engine_conf.address else "local", "address": engine_conf.address,
                                   "weights": engine_conf.weights or "default", "device": engine_conf.device, "dtype": engine_conf.dtype},
                           started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if item is not None:
        versions.refresh(item, shot_root, select=folder.name)
    return task


def start_render(context, scene, engine_overrides: dict | None = None, export_progress=None, item=None) -> RenderTask:
    """The render button: one shot (the scene's single shot, or `item`), tracked per scene in
    runtime.tasks/status for the panel. Raises AddonError."""
    if runtime.busy():
        raise AddonError("A render is already running.", "Wait for it to finish or cancel it.")
    task = begin_shot(context, scene, item, engine_overrides, export_progress)
    runtime.tasks[scene.name] = task
    runtime.status[scene.name] = task.progress
    return task


def _record_end(task: RenderTask) -> None:
    """version.json gets the job's outcome and the engine's identity; engine.log a summary line
    (the engine logs only warnings, so a good run would otherwise leave it empty)."""
    folder = task.version_dir
    if folder is None:
        return
    p = task.progress
    hello = task.engine.hello or {}
    state = {"done": "done", "cancelled": "cancelled"}.get(p.state, "failed")
    frames = len(frames_on_disk(Path(folder) / "frames"))
    engine = dict(versions.read_record(folder).get("engine") or {})
    engine.update({k: hello.get(k) for k in ("engine_version", "protocol", "device", "dtype", "model", "weights") if k in hello})
    versions.update_record(folder, state=state, frames=frames, resumed_frames=p.resumed_frames, elapsed_s=round(p.elapsed_s, 3),
                           accepted_settings=p.settings or None, error=p.message if state == "failed" else None,
                           warnings=p.warnings, engine=engine, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    log_path = getattr(task.engine, "log_path", None)
    if log_path is not None:
        plan = task.plan
        line = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} add-on: job {task.job_id} (shot '{plan.shot_name}' {Path(folder).name}) {state}: "
                f"{frames}/{plan.frame_count} frames ({p.resumed_frames} resumed) in {p.elapsed_s:.1f} s; engine "
                f"{hello.get('engine_version', '?')} on {hello.get('device', '?')} {hello.get('dtype', '')}, model {hello.get('model', '?')}"
                + (f"; {p.message}" if state == "failed" else "") + "\n")
        try:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line)
        except OSError:
            pass


def update_live_strip(scene, task: RenderTask) -> None:
    """Live preview: the frames written so far (the unbroken run from the shot's first frame)
    shown in the shot's strip while the job runs; also the panel's latest-frame thumbnail."""
    folder = task.version_dir
    if folder is None or task.progress.finished:
        return
    frames = frames_on_disk(Path(folder) / "frames")
    run = 0
    for n, path in enumerate(frames, start=1):
        if path.name != f"frame_{n:05d}.png":
            break
        run = n
    if run > task.live_frames:
        plan = task.plan
        vse.show_frames(scene, plan.strip_name, frames[:run], plan.frame_start)
        task.live_frames = run


def finish_render(scene, task: RenderTask, import_pose_preview: bool = False):
    """Once the job has ended: record the outcome in the version's version.json and engine.log;
    after `done`, show the frames in the shot's strip (and optionally the skeleton maps).
    Returns the strip, or None when the job did not end with every frame."""
    plan: ShotPlan = task.plan
    progress = task.progress
    if progress.state == "done" and len(progress.frames) != plan.frame_count:
        progress.state = "error"
        progress.message = f"The engine reported done but {len(progress.frames)} of {plan.frame_count} frames are in {plan.frames_dir}."
        progress.hint = "Render again (finished frames are kept)."
    _record_end(task)
    _refresh_versions(scene, task)
    if progress.state != "done":
        return None
    strip = vse.show_frames(scene, plan.strip_name, progress.frames, plan.frame_start)
    if import_pose_preview and plan.pose_paths:
        vse.import_image_sequence(scene, plan.pose_paths, plan.frame_start, f"{plan.strip_name} skeleton", lowest_channel=strip.channel + 1)
    progress.message += f"; strip '{strip.name}' on channel {strip.channel} at frame {int(strip.frame_start)}"
    task.strip_name = strip.name
    return strip


def _refresh_versions(scene, task: RenderTask) -> None:
    import bpy

    name = task.item_name
    owner = bpy.data.scenes.get(task.plan.scene_name) or scene
    item = owner.animate_anyone.shots.get(name) if name else None
    if item is not None:
        versions.refresh(item, Path(task.version_dir).parent, select=Path(task.version_dir).name)


def advance(context, scene_name: str) -> JobProgress | None:
    """One timer tick of the render operator: handle the queued engine events without waiting,
    show the frames done so far in the strip and, once the job has ended, record it and import
    the frames (into the sequencer's scene in 5.0 when it shows this one)."""
    task = runtime.tasks.get(scene_name)
    if task is None:
        return None
    progress = task.pump()
    tick(context, scene_name, task)
    return progress


def tick(context, scene_name: str, task: RenderTask) -> None:
    """After a pump: the live strip while running, the end of the job once (shared with the queue)."""
    import bpy

    scene = bpy.data.scenes.get(scene_name)
    progress = task.progress
    if scene is None:
        if progress.finished and not task.imported:
            task.imported = True
            if progress.state == "done":
                progress.state, progress.message, progress.hint = "error", f"The scene '{scene_name}' is gone.", "The frames are on disk."
        return
    target = shots.strip_scene(scene, context)
    if not progress.finished:
        try:
            update_live_strip(target, task)
        except (RuntimeError, ValueError):
            pass  # the preview is a nicety; the final import reports real problems
        return
    if task.imported:
        return
    task.imported = True
    try:
        finish_render(target, task, scene.animate_anyone.import_pose_preview)
    except (RuntimeError, ValueError) as exc:
        progress.state, progress.message = "error", f"Importing the frames failed: {exc}"
        progress.hint = "The frames are on disk; add them with Add > Image/Sequence."


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


def render_blocking(context, scene, engine_overrides: dict | None = None, echo=print, item=None):
    """The command-line path (Blender -b runs no timers) for one shot (`item` of the shot list, or
    None = the scene's single shot): returns (task, strip). Raises AddonError."""
    def export_progress(done, total):
        if done == total or done % max(1, total // 10) == 0:
            echo(f"skeleton maps {done}/{total}")

    task = start_render(context, scene, engine_overrides, export_progress=export_progress, item=item)
    plan = task.plan
    for note in plan.notes:
        echo(f"note: {note}")
    echo(f"shot '{plan.shot_name}' {task.version_dir.name}: frames {plan.frame_start}-{plan.frame_end} at {plan.width}x{plan.height}, poses in {plan.poses_dir}")
    progress = task.run_blocking(progress_printer(echo))
    task.imported = True
    strip = finish_render(scene, task, scene.animate_anyone.import_pose_preview)
    if progress.state == "cancelled":
        raise progress.error
    if strip is None:
        raise progress.error or AddonError(progress.message, progress.hint)
    echo(progress.message)
    return task, strip


# -- the queue ------------------------------------------------------------------------------------
def queue_shots(scene, names: list[str], settings_from: dict | None = None) -> list:
    """Put shots of the scene's shot list in the queue (checked to exist). Returns the entries."""
    for name in names:
        shots.find_shot(scene, name)
    return [runtime.queue.add(scene.name, name, settings_from) for name in names]


def queue_functions(context, engine_overrides: dict | None = None, echo=None):
    """The (start, finish) pair the RenderQueue calls for each entry."""
    import bpy

    def start(entry):
        scene = bpy.data.scenes.get(entry.scene_name)
        if scene is None:
            raise AddonError(f"The scene '{entry.scene_name}' is gone.", "Remove the entry from the queue.")
        item = shots.find_shot(scene, entry.shot_name)
        export_progress = None
        if echo is not None:
            def export_progress(done, total):
                if done == total:
                    echo(f"[{entry.shot_name}] skeleton maps {done}/{total}")
        task = begin_shot(context, scene, item, engine_overrides, export_progress, entry.settings_from)
        entry.version = task.version_dir.name
        if echo is not None:
            plan = task.plan
            for note in plan.notes:
                echo(f"[{entry.shot_name}] note: {note}")
            echo(f"[{entry.shot_name}] {entry.version}: frames {plan.frame_start}-{plan.frame_end}, poses in {plan.poses_dir}")
        return task

    def finish(entry):
        tick(context, entry.scene_name, entry.task)

    return start, finish


def queue_step(context) -> object | None:
    """One UI timer tick of the queue: pump the running job, update its live strip, or start the
    next shot. Returns the entry worked on."""
    start, finish = queue_functions(context)
    entry = runtime.queue.step(start, finish)
    if entry is not None and entry.state == "running" and entry.task is not None:
        tick(context, entry.scene_name, entry.task)
    return entry


def run_queue_blocking(context, engine_overrides: dict | None = None, echo=print, poll_s: float = 0.2, on_entry=None) -> list:
    """Run the queue to its end on this thread (command line, tests). `on_entry(entry)` is called
    after every step (tests cancel or kill from there). Returns the queue's entries."""
    start, finish = queue_functions(context, engine_overrides, echo)
    printers: dict[int, object] = {}
    states: dict[int, str] = {}

    def on_progress(entry):
        if entry.state == "running" and entry.task is not None:
            tick(context, entry.scene_name, entry.task)
            if echo is not None:
                printer = printers.setdefault(id(entry), progress_printer(lambda line: echo(f"[{entry.shot_name}] {line}")))
                printer(entry.task.progress)
        if echo is not None and entry.finished and states.get(id(entry)) != entry.state:
            echo(f"[{entry.shot_name}] {entry.text()}" + (f" ({entry.hint})" if entry.state == "error" and entry.hint else ""))
        states[id(entry)] = entry.state
        if on_entry is not None:
            on_entry(entry)

    return runtime.queue.run_blocking(start, finish, on_progress, poll_s)


def apply_to_shot(item, args) -> None:
    """The command line's generation flags for a shot of the list: the seed is the shot's own;
    the other flags already set the scene's defaults (apply_arguments), and a shot that overrides
    a flag's group gets the flag's value too. So a flag always reaches the rendered shots."""
    from .contract import settings as contract_settings

    for name, value in contract_settings.from_arguments(args).items():
        setting = contract_settings.BY_NAME[name]
        if not setting.addon_property:
            continue
        if name == "seed" or getattr(item, f"override_{setting.group}", False):
            setattr(item, name, value)


def render_shot_list(context, scene, args, engine_overrides: dict) -> int:
    """The command line's `--all-shots` / `--shot NAME` with a shot list: queue, run to the end,
    save the .blend with every shot's strip. Returns the exit status (0 all done, 2 a shot failed)."""
    import sys

    import bpy

    echo = lambda line: print(line, flush=True)  # noqa: E731
    settings = scene.animate_anyone
    if not len(settings.shots):
        raise AddonError(f"Scene '{scene.name}' has no shot list, so --all-shots has nothing to render.",
                         "Add shots (panel: 'Add Shots from Markers'), or render the scene's single shot without --all-shots.")
    if args.start is not None or args.end is not None:
        raise AddonError("--start/--end set the single shot's frames; the shots of the shot list have their own.",
                         "Change a shot's frames in the shot list, or leave out --start/--end.")
    names = [s.name for s in settings.shots] if args.all_shots else [args.shot]
    for name in names:
        apply_to_shot(shots.find_shot(scene, name), args)
    queue_shots(scene, names)
    entries = run_queue_blocking(context, engine_overrides, echo=echo)
    save = args.save or str(shots.output_base(settings) / f"{bpy.path.clean_name(scene.name)}_shots.blend")
    Path(save).parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=save, copy=False)
    target = shots.strip_scene(scene, context)
    for entry in entries:
        item = settings.shots.get(entry.shot_name)
        strip = vse.find_strip(target, shots.strip_name(item)) if item is not None else None
        if entry.state == "done" and strip is not None:
            echo(f"shot '{entry.shot_name}' {entry.version}: strip '{strip.name}', {len(strip.elements)} frames from frame "
                 f"{int(strip.frame_start)} on channel {strip.channel}")
        else:
            print(f"error: shot '{entry.shot_name}' {entry.state}: {entry.message}", file=sys.stderr)
            if entry.hint:
                print(f"hint: {entry.hint}", file=sys.stderr)
    echo(f"saved {save}")
    return 0 if all(e.state == "done" for e in entries) else 2
