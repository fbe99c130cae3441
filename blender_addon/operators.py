"""Operators: render (modal, never blocks the UI; blocking in background mode), cancel, check and
set up the engine, match the scene to the frames, open the shot folder; the shot list (add, remove,
from markers), the queue (render all/selected, cancel, retry, clear) and versions (render again
with these settings, delete)."""

from pathlib import Path

import bpy

from . import runtime, shots, versions, vse
from .engine_setup import set_up_engine_env
from .errors import AddonError, UserError
from .preferences import engine_env_dir, engine_settings, get_preferences
from .render_shot import advance, fail, queue_shots, queue_step, render_blocking, run_queue_blocking, start_render

REDRAW_AREAS = {'PROPERTIES', 'DOPESHEET_EDITOR', 'PREFERENCES', 'SEQUENCE_EDITOR'}


def redraw_all():
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in REDRAW_AREAS:
                area.tag_redraw()


def _report(op, exc: AddonError):
    op.report({'ERROR'}, exc.message + (f" {exc.hint}" if exc.hint else ""))


class ANIMATE_ANYONE_OT_render(bpy.types.Operator):
    """Turn the armature's animation into a video of the reference character, imported as one strip"""

    bl_idname = "animate_anyone.render"
    bl_label = "Animate Anyone"
    bl_options = {'REGISTER'}

    _timer = None
    _scene_name = ""

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not runtime.busy()

    def execute(self, context):
        # Called directly (scripts, background mode): the blocking path.
        scene = context.scene
        try:
            render_blocking(context, scene, echo=print, item=shots.active_shot(scene))
        except UserError as exc:
            current = runtime.status.get(scene.name)
            if current is None or current.error is not exc:
                fail(scene, exc)
            _report(self, exc)
            return {'CANCELLED'}
        self.report({'INFO'}, runtime.status[scene.name].message)
        return {'FINISHED'}

    def invoke(self, context, event):
        if bpy.app.background:
            return self.execute(context)
        scene = context.scene
        wm = context.window_manager
        wm.progress_begin(0, 100)

        def export_progress(*args):
            if len(args) >= 2 and args[1]:
                wm.progress_update(int(100 * args[0] / args[1]))

        try:
            task = start_render(context, scene, export_progress=export_progress, item=shots.active_shot(scene))
        except UserError as exc:
            fail(scene, exc)
            _report(self, exc)
            return {'CANCELLED'}
        finally:
            wm.progress_end()
        for note in task.plan.notes:
            self.report({'INFO'}, note)
        self._scene_name = scene.name
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        redraw_all()
        return {'RUNNING_MODAL'}

    def modal(self, context, event):
        task = runtime.tasks.get(self._scene_name)
        if task is None:
            return self._end(context, {'CANCELLED'})
        if event.type == 'ESC' and event.value == 'PRESS':
            task.cancel()
            redraw_all()
            return {'RUNNING_MODAL'}
        if event.type != 'TIMER':
            return {'PASS_THROUGH'}
        progress = advance(context, self._scene_name)
        redraw_all()
        if not progress.finished:
            return {'PASS_THROUGH'}
        if progress.state == "done":
            self.report({'INFO'}, progress.message)
            return self._end(context, {'FINISHED'})
        self.report({'WARNING'} if progress.state == "cancelled" else {'ERROR'}, progress.message + (f" {progress.hint}" if progress.hint else ""))
        return self._end(context, {'CANCELLED'})

    def _end(self, context, result):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        redraw_all()
        return result


class ANIMATE_ANYONE_OT_cancel(bpy.types.Operator):
    """Stop the render within one denoising step; frames already written are kept"""

    bl_idname = "animate_anyone.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return runtime.busy()

    def execute(self, context):
        for task in runtime.tasks.values():
            task.cancel()
        runtime.queue.cancel_all()
        redraw_all()
        return {'FINISHED'}


def _poll_background():
    """Timer: redraw while the check/setup threads run; apply the setup's result when it ends."""
    redraw_all()
    if runtime.check_status.state == "running" or runtime.setup_status.state == "running":
        return 0.25
    result = getattr(runtime.setup_status, "python", None)
    prefs = get_preferences()
    if result and prefs is not None and runtime.setup_status.state == "ok":
        prefs.engine_python = str(result)
        runtime.setup_status.python = None
    return None


def start_background_poll():
    if not bpy.app.background and not bpy.app.timers.is_registered(_poll_background):
        bpy.app.timers.register(_poll_background, first_interval=0.25)


class ANIMATE_ANYONE_OT_check_engine(bpy.types.Operator):
    """Start the engine, show what it reports (version, device, weights), and explain any problem"""

    bl_idname = "animate_anyone.check_engine"
    bl_label = "Check Engine"

    def execute(self, context):
        settings = engine_settings(context)
        runtime.check_status.run(lambda status: runtime.check_engine(settings, status))
        if bpy.app.background:
            runtime.check_status.join()
            status = runtime.check_status
            if status.state == "error":
                self.report({'ERROR'}, status.message + (f" {status.hint}" if status.hint else ""))
                return {'CANCELLED'}
            self.report({'INFO'}, "; ".join(status.lines[-3:]))
            return {'FINISHED'}
        start_background_poll()
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_setup_engine(bpy.types.Operator):
    """Create the engine environment in the add-on's user folder and install torch and the engine into it"""

    bl_idname = "animate_anyone.setup_engine"
    bl_label = "Set Up Engine Environment"

    env_dir: bpy.props.StringProperty(name="Folder", description="Where to create it (default: the add-on's user folder)", default="", options={'SKIP_SAVE'})

    def execute(self, context):
        prefs = get_preferences(context)
        source = bpy.path.abspath(prefs.engine_source) if prefs is not None and prefs.engine_source else ""
        env_dir = self.env_dir or str(engine_env_dir())

        def work(status):
            status.python = set_up_engine_env(env_dir, source, status)

        runtime.setup_status.run(work)
        if bpy.app.background:
            runtime.setup_status.join()
            status = runtime.setup_status
            if status.state == "error":
                self.report({'ERROR'}, status.message + (f" {status.hint}" if status.hint else ""))
                return {'CANCELLED'}
            if prefs is not None:
                prefs.engine_python = str(status.python)
            self.report({'INFO'}, status.message)
            return {'FINISHED'}
        start_background_poll()
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_match_scene(bpy.types.Operator):
    """Set the scene's render size to the generated frames' size"""

    bl_idname = "animate_anyone.match_scene"
    bl_label = "Match Scene to Frames"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        progress = runtime.status.get(context.scene.name)
        if progress is None or not progress.frames:
            self.report({'ERROR'}, "No rendered frames for this scene yet. Render first.")
            return {'CANCELLED'}
        w, h = vse.match_scene_to_frames(context.scene, progress.frames)
        self.report({'INFO'}, f"Render size set to {w}x{h}")
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_open_folder(bpy.types.Operator):
    """Open the shot's output folder"""

    bl_idname = "animate_anyone.open_folder"
    bl_label = "Open Folder"

    def execute(self, context):
        progress = runtime.status.get(context.scene.name)
        if progress is None or not progress.output:
            return {'CANCELLED'}
        bpy.ops.wm.path_open(filepath=str(Path(progress.output)))
        return {'FINISHED'}


# -- the shot list ---------------------------------------------------------------------------------
class ANIMATE_ANYONE_OT_shot_add(bpy.types.Operator):
    """Add a shot by hand: the scene's frame range (the preview range when it is on), the scene camera"""

    bl_idname = "animate_anyone.shot_add"
    bl_label = "Add Shot"
    bl_options = {'REGISTER', 'UNDO'}

    name: bpy.props.StringProperty(name="Name", default="", options={'SKIP_SAVE'})

    def execute(self, context):
        scene = context.scene
        start, end = (scene.frame_preview_start, scene.frame_preview_end) if scene.use_preview_range else (scene.frame_start, scene.frame_end)
        name = self.name or f"Shot {len(scene.animate_anyone.shots) + 1:03d}"
        shot = shots.new_shot(scene, name, start, end, None)
        self.report({'INFO'}, f"Added shot '{shot.name}', frames {start}-{end}")
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_shot_remove(bpy.types.Operator):
    """Remove the active shot from the list (its version folders on disk are kept)"""

    bl_idname = "animate_anyone.shot_remove"
    bl_label = "Remove Shot"
    bl_options = {'REGISTER', 'UNDO'}

    @classmethod
    def poll(cls, context):
        return context.scene is not None and shots.active_shot(context.scene) is not None

    def execute(self, context):
        s = context.scene.animate_anyone
        s.shots.remove(s.shot_index)
        s.shot_index = max(0, min(s.shot_index, len(s.shots) - 1))
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_shots_from_markers(bpy.types.Operator):
    """One shot per timeline marker bound to a camera: from the marker to the frame before the next one"""

    bl_idname = "animate_anyone.shots_from_markers"
    bl_label = "Add Shots from Markers"
    bl_options = {'REGISTER', 'UNDO'}

    def execute(self, context):
        try:
            made = shots.shots_from_markers(context.scene)
        except UserError as exc:
            _report(self, exc)
            return {'CANCELLED'}
        self.report({'INFO'}, f"{len(made)} shot(s): " + ", ".join(f"{s.name} {s.frame_start}-{s.frame_end}" for s in made))
        return {'FINISHED'}


# -- the queue ------------------------------------------------------------------------------------
def _queue_timer():
    """Drives the queue while Blender runs its UI (timers do not run in -b mode: see run_queue_blocking)."""
    try:
        queue_step(bpy.context)
    except Exception as exc:  # noqa: BLE001 - a bug must not kill the timer silently with jobs queued
        running = runtime.queue.running
        if running is not None:
            running.state, running.message, running.hint = "error", f"{exc.__class__.__name__}: {exc}", "This is a bug in the add-on."
    redraw_all()
    return 0.2 if runtime.queue.active else None


def start_queue(context) -> None:
    """Run the queue: a timer in the UI, to its end (blocking) in background mode."""
    if bpy.app.background:
        run_queue_blocking(context)
    elif not bpy.app.timers.is_registered(_queue_timer):
        bpy.app.timers.register(_queue_timer, first_interval=0.05)


class ANIMATE_ANYONE_OT_render_shots(bpy.types.Operator):
    """Queue shots of the shot list and render them one after another through one engine"""

    bl_idname = "animate_anyone.render_shots"
    bl_label = "Render Shots"

    which: bpy.props.EnumProperty(
        name="Shots",
        items=[('ALL', "All Shots", "Every shot of the list"), ('SELECTED', "Selected Shots", "The shots ticked in the list"),
               ('ACTIVE', "Active Shot", "The shot picked in the list")],
        default='ALL',
    )

    @classmethod
    def poll(cls, context):
        return context.scene is not None and len(context.scene.animate_anyone.shots) > 0 and not any(
            not t.progress.finished for t in runtime.tasks.values())

    def execute(self, context):
        scene = context.scene
        items = list(scene.animate_anyone.shots)
        if self.which == 'SELECTED':
            items = [s for s in items if s.selected]
        elif self.which == 'ACTIVE':
            items = [s for s in (shots.active_shot(scene),) if s is not None]
        if not items:
            self.report({'ERROR'}, "No shot to render: tick shots in the list, or use 'Render All Shots'.")
            return {'CANCELLED'}
        entries = queue_shots(scene, [s.name for s in items])
        self.report({'INFO'}, f"Queued {len(entries)} shot(s): " + ", ".join(e.shot_name for e in entries))
        start_queue(context)
        redraw_all()
        failed = [e for e in entries if e.state == "error"]
        if bpy.app.background and failed:
            self.report({'ERROR'}, "; ".join(f"{e.shot_name}: {e.message}" for e in failed))
        return {'FINISHED'}


def _entry(index: int):
    entries = runtime.queue.entries
    return entries[index] if 0 <= index < len(entries) else None


class ANIMATE_ANYONE_OT_queue_cancel(bpy.types.Operator):
    """Cancel one queued shot (a running one stops within one denoising step; its frames are kept), or all"""

    bl_idname = "animate_anyone.queue_cancel"
    bl_label = "Cancel"

    index: bpy.props.IntProperty(name="Entry", default=-1, description="The queue entry; -1 = all", options={'SKIP_SAVE'})

    def execute(self, context):
        if self.index < 0:
            runtime.queue.cancel_all()
        else:
            entry = _entry(self.index)
            if entry is None:
                return {'CANCELLED'}
            runtime.queue.cancel(entry)
        redraw_all()
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_queue_retry(bpy.types.Operator):
    """Queue a failed or cancelled shot again: it resumes in its version folder"""

    bl_idname = "animate_anyone.queue_retry"
    bl_label = "Retry"

    index: bpy.props.IntProperty(name="Entry", default=0, options={'SKIP_SAVE'})

    def execute(self, context):
        entry = _entry(self.index)
        if entry is None or entry.state not in ("error", "cancelled"):
            return {'CANCELLED'}
        runtime.queue.retry(entry)
        start_queue(context)
        redraw_all()
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_queue_clear(bpy.types.Operator):
    """Remove the finished entries (done, failed, cancelled) from the queue"""

    bl_idname = "animate_anyone.queue_clear"
    bl_label = "Clear Finished"

    def execute(self, context):
        runtime.queue.clear_finished()
        redraw_all()
        return {'FINISHED'}


# -- versions -------------------------------------------------------------------------------------
def _picked_version(context):
    scene = context.scene
    item = shots.active_shot(scene) if scene is not None else None
    if item is None or not (0 <= item.version_index < len(item.versions)):
        return None, None
    return item, shots.shot_root(scene, item) / item.versions[item.version_index].name


class ANIMATE_ANYONE_OT_version_render_again(bpy.types.Operator):
    """Render the active shot again with the picked version's settings, seed and reference (a new
    version when the rig's motion changed since; otherwise that version resumes)"""

    bl_idname = "animate_anyone.version_render_again"
    bl_label = "Render Again with These Settings"

    @classmethod
    def poll(cls, context):
        return _picked_version(context)[0] is not None

    def execute(self, context):
        item, folder = _picked_version(context)
        try:
            inputs = versions.recorded_inputs(folder)
        except UserError as exc:
            _report(self, exc)
            return {'CANCELLED'}
        queue_shots(context.scene, [item.name], settings_from=inputs)
        start_queue(context)
        redraw_all()
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_version_delete(bpy.types.Operator):
    """Delete the picked version's folder (frames, maps, record); the strip switches to the newest version left"""

    bl_idname = "animate_anyone.version_delete"
    bl_label = "Delete Version"
    bl_options = {'REGISTER'}  # no undo: the folder is gone from disk

    @classmethod
    def poll(cls, context):
        return _picked_version(context)[0] is not None and not runtime.busy()

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        item, folder = _picked_version(context)
        scene = context.scene
        try:
            versions.delete_version(folder)
        except UserError as exc:
            _report(self, exc)
            return {'CANCELLED'}
        versions.refresh(item, folder.parent)
        if len(item.versions) == 0:
            target = shots.strip_scene(scene, context)
            strip = vse.find_strip(target, shots.strip_name(item))
            if strip is not None:
                vse.strips_of(target.sequence_editor).remove(strip)
        else:
            versions.on_version_picked(item, context)
        self.report({'INFO'}, f"Deleted {folder}")
        return {'FINISHED'}


class ANIMATE_ANYONE_OT_versions_refresh(bpy.types.Operator):
    """Read the active shot's version folders from disk again"""

    bl_idname = "animate_anyone.versions_refresh"
    bl_label = "Refresh Versions"

    def execute(self, context):
        item = shots.active_shot(context.scene)
        if item is None:
            return {'CANCELLED'}
        versions.refresh(item, shots.shot_root(context.scene, item))
        return {'FINISHED'}


@bpy.app.handlers.persistent
def _on_load_pre(*_args):
    runtime.cancel_tasks()


classes = (
    ANIMATE_ANYONE_OT_render,
    ANIMATE_ANYONE_OT_cancel,
    ANIMATE_ANYONE_OT_check_engine,
    ANIMATE_ANYONE_OT_setup_engine,
    ANIMATE_ANYONE_OT_match_scene,
    ANIMATE_ANYONE_OT_open_folder,
    ANIMATE_ANYONE_OT_shot_add,
    ANIMATE_ANYONE_OT_shot_remove,
    ANIMATE_ANYONE_OT_shots_from_markers,
    ANIMATE_ANYONE_OT_render_shots,
    ANIMATE_ANYONE_OT_queue_cancel,
    ANIMATE_ANYONE_OT_queue_retry,
    ANIMATE_ANYONE_OT_queue_clear,
    ANIMATE_ANYONE_OT_version_render_again,
    ANIMATE_ANYONE_OT_version_delete,
    ANIMATE_ANYONE_OT_versions_refresh,
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    for timer in (_poll_background, _queue_timer):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
