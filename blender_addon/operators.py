"""Operators: render (modal, never blocks the UI; blocking in background mode), cancel, check and
set up the engine, match the scene to the frames, open the shot folder."""

from pathlib import Path

import bpy

from . import runtime, vse
from .engine_setup import set_up_engine_env
from .errors import AddonError, UserError
from .preferences import engine_env_dir, engine_settings, get_preferences
from .render_shot import advance, fail, render_blocking, start_render

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
            render_blocking(context, scene, echo=print)
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
            task = start_render(context, scene, export_progress=export_progress)
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
)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if bpy.app.timers.is_registered(_poll_background):
        bpy.app.timers.unregister(_poll_background)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
