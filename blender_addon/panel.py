"""The panel (Properties > Output > Animate Anyone) and the render button in the Timeline header.

Drawing reads `runtime.status` (what the last render did) and never changes anything.
"""

import bpy

from . import runtime, shots
from .contract import settings as contract_settings
from .properties import OVERRIDE_GROUPS
from .errors import UserError
from .shot import shot_resolution


def draw_settings(layout, settings, group: str, skip: tuple[str, ...] = ()) -> None:
    """The shot's fields for one group of the contract's settings, in declaration order."""
    for setting in contract_settings.SETTINGS:
        if setting.group == group and setting.addon_property and setting.name not in skip:
            layout.prop(settings, setting.name)


def draw_progress(layout, progress):
    """A real progress bar (Blender 4.0+: layout.progress) with stage, step, frames and ETA."""
    layout.progress(factor=progress.factor(), type='BAR', text=progress.text())


def draw_engine_status(layout):
    for title, status in (("Engine check", runtime.check_status), ("Engine setup", runtime.setup_status)):
        if status.state == "idle":
            continue
        box = layout.box()
        if status.state == "running":
            box.progress(factor=status.factor, type='BAR', text=f"{title}...")
        elif status.state == "error":
            box.label(text=f"{title} failed: {status.message}", icon='ERROR')
            if status.hint:
                box.label(text=status.hint, icon='INFO')
        else:
            box.label(text=status.message or f"{title}: OK", icon='CHECKMARK')
        for line in status.lines[-6:]:
            box.label(text=line)


_previews = None  # bpy.utils.previews collection: thumbnails of reference files, made in register()


def reference_preview_icon(path: str) -> int:
    """Icon id of a thumbnail of the reference file (0 when there is none to show)."""
    if _previews is None or not path:
        return 0
    from pathlib import Path

    full = bpy.path.abspath(path)
    if not Path(full).is_file():
        return 0
    key = full
    if key not in _previews:
        _previews.load(key, full, 'IMAGE')
    return _previews[key].icon_id


def _prop_with_placeholder(layout, data, name, placeholder):
    # `placeholder` (grey text in an empty field) exists from Blender 4.1 on.
    if bpy.app.version >= (4, 1, 0):
        layout.prop(data, name, placeholder=placeholder)
    else:
        layout.prop(data, name)


def _detected_bone_map(armature) -> str:
    """One line for the panel: which bundled map fits the armature, or why none does."""
    try:
        from .skeleton.export import detect_bone_map

        bone_map, missing = detect_bone_map(armature)
    except ImportError:
        return "Bone map detection is not installed"
    except Exception as exc:  # the pose export's errors (message + hint): shown, not raised
        return getattr(exc, "message", str(exc))
    label = getattr(bone_map, "label", None) or bone_map.name
    return f"Detected: {label}" + (f" ({len(missing)} bones missing)" if missing else "")


class ANIMATE_ANYONE_PT_shot(bpy.types.Panel):
    bl_label = "Animate Anyone"
    bl_idname = "ANIMATE_ANYONE_PT_shot"
    bl_space_type = 'PROPERTIES'
    bl_region_type = 'WINDOW'
    bl_context = "output"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        scene = context.scene
        settings = scene.animate_anyone
        progress = runtime.status.get(scene.name)

        draw_shot_list(layout, scene)
        item = shots.active_shot(scene)
        if item is not None:
            draw_shot_editor(layout, context, scene, item)
            layout.label(text="Scene defaults (every shot's settings it does not override):", icon='SCENE_DATA')
        draw_defaults(layout, context, scene, settings)

        draw_render_state(layout.box(), progress, item, settings)
        draw_engine_status(layout)


def draw_render_state(box, progress, item, settings) -> None:
    """The last render's state (progress, error, done) with what the engine noted about the job,
    and the render buttons."""
    state = progress.state if progress is not None else "idle"
    if state in ("starting", "running", "cancelling"):
        draw_progress(box, progress)
        draw_live_preview(box, progress)
        box.operator("animate_anyone.cancel", icon='CANCEL', text="Cancel (Esc)")
    elif state == "error":
        box.label(text=progress.message, icon='ERROR')
        if progress.hint:
            box.label(text=progress.hint, icon='INFO')
    elif state == "cancelled":
        box.label(text=progress.message, icon='CANCEL')
    elif state == "done":
        box.label(text=progress.message, icon='CHECKMARK')
        row = box.row()
        row.operator("animate_anyone.match_scene", icon='FULLSCREEN_ENTER')
        row.operator("animate_anyone.open_folder", icon='FILE_FOLDER')
    for warning in (progress.warnings if progress is not None else [])[-3:]:  # the engine's `accepted` warnings
        box.label(text=warning, icon='INFO')
    if state in ("starting", "running", "cancelling"):
        return
    label = "Render Again" if state == "done" else "Render"
    if item is not None:
        label += f" '{item.name}'"
    box.operator("animate_anyone.render", icon='RENDER_ANIMATION', text=label)
    if len(settings.shots):
        row = box.row(align=True)
        row.operator("animate_anyone.render_shots", icon='SEQUENCE', text="Render All Shots").which = 'ALL'
        row.operator("animate_anyone.render_shots", icon='CHECKBOX_HLT', text="Render Selected").which = 'SELECTED'


def draw_defaults(layout, context, scene, settings) -> None:
    """The scene's shot settings: the single shot's, and the defaults of the shot list's shots."""
    draw_subject(layout.column(), context, scene, settings)
    draw_rescale(layout.column(), settings)
    draw_frames_and_size(layout, scene, settings)
    for group in ("sampling", "context", "output"):  # the contract's settings, by group
        draw_settings(layout.column(align=True), settings, group)
    col = layout.column()
    if not len(settings.shots):
        _prop_with_placeholder(col, settings, "shot_name", scene.name)
    col.prop(settings, "output_dir")
    col.prop(settings, "import_pose_preview")
    col.prop(settings, "write_skeleton_maps")


def draw_reference(col, owner, scale: float) -> None:
    """The reference image of the scene's shot settings or of a shot (`owner`): the source, then
    the file or image datablock with a thumbnail."""
    col.prop(owner, "reference_source", expand=True)
    if owner.reference_source == 'FILE':
        col.prop(owner, "reference_path")
        icon = reference_preview_icon(owner.reference_path)
        if icon:
            col.template_icon(icon_value=icon, scale=scale)
    elif owner.reference_source == 'IMAGE':
        col.template_ID(owner, "reference_image", open="image.open")
        image = owner.reference_image
        if image is not None and image.preview is not None:
            col.template_icon(icon_value=image.preview.icon_id, scale=scale)


def draw_subject(col, context, scene, settings) -> None:
    """What to animate: the reference image, the armature, its bone map, hands and face."""
    draw_reference(col, settings, scale=6.0)
    col.prop(settings, "armature")
    active = getattr(context, "active_object", None)
    active_armature = active if active is not None and active.type == 'ARMATURE' else None
    if settings.armature is None:
        col.label(text=f"Using the active armature: {active_armature.name}" if active_armature else "Pick an armature (or select one)",
                  icon='ARMATURE_DATA')
    _prop_with_placeholder(col, settings, "bone_map", "Auto-detect")
    armature = settings.armature or active_armature
    if armature is not None and not settings.bone_map:
        col.label(text=_detected_bone_map(armature), icon='BONE_DATA')
    row = col.row(align=True)
    row.prop(settings, "hands", toggle=True)
    row.prop(settings, "face", toggle=True)
    if scene.camera is None:
        col.label(text="The scene has no camera: the maps are drawn from the scene camera", icon='ERROR')


def draw_rescale(col, settings) -> None:
    """Pose rescaling (docs/pose_rescaling.md), greyed out when off."""
    col.prop(settings, "rescale")
    sub = col.column()
    sub.active = settings.rescale
    sub.prop(settings, "rescale_source", expand=True)
    sub.prop(settings, "reference_pose_frame" if settings.rescale_source == 'FRAME' else "reference_keypoints")
    sub.prop(settings, "align_first_frame")
    row = sub.row()
    row.active = settings.rescale and not settings.align_first_frame
    row.prop(settings, "align_frame")


def draw_frames_and_size(layout, scene, settings) -> None:
    """The frame range and the size (the model's, the render's, or custom), with the size's check."""
    col = layout.column(heading="Frames")
    col.prop(settings, "use_scene_range")
    sub = col.column(align=True)
    sub.active = not settings.use_scene_range
    sub.prop(settings, "frame_start")
    sub.prop(settings, "frame_end")
    col = layout.column()
    col.prop(settings, "size_source")
    sub = col.column(align=True)
    sub.active = settings.size_source == 'CUSTOM'
    draw_settings(sub, settings, "size")
    try:
        w, h, note = shot_resolution(scene, settings)
        if settings.size_source == 'NATIVE':
            col.label(text="The model's native size (the engine says which)", icon='NONE')
        else:
            col.label(text=note or f"{w}x{h}", icon='INFO' if note else 'NONE')
    except UserError as exc:  # a bad custom size: shown, not raised
        col.label(text=exc.message, icon='ERROR')


# -- the shot list ----------------------------------------------------------------------------------
class ANIMATE_ANYONE_UL_shots(bpy.types.UIList):
    """One row per shot: render tick, name, frames, camera, and its queue state."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.prop(item, "selected", text="")
        row.prop(item, "name", text="", emboss=False)
        row.label(text=f"{item.frame_start}-{item.frame_end}")
        row.label(text=item.camera.name if item.camera is not None else "scene camera", icon='CAMERA_DATA')
        entry = runtime.queue.find(item.id_data.name, item.name)
        if entry is not None:
            row.label(text="", icon=STATE_ICONS[entry.state])


class ANIMATE_ANYONE_UL_versions(bpy.types.UIList):
    """The version picker: one row per version folder (the strip shows the picked one)."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon=VERSION_ICONS.get(item.state, 'QUESTION'))
        row.label(text=item.summary or item.state)


STATE_ICONS = {"waiting": 'TIME', "running": 'PLAY', "done": 'CHECKMARK', "error": 'ERROR', "cancelled": 'CANCEL'}
VERSION_ICONS = {"done": 'CHECKMARK', "rendering": 'PLAY', "new": 'TIME', "failed": 'ERROR', "cancelled": 'CANCEL'}


def draw_shot_list(layout, scene) -> None:
    settings = scene.animate_anyone
    row = layout.row()
    row.template_list("ANIMATE_ANYONE_UL_shots", "", settings, "shots", settings, "shot_index", rows=3)
    col = row.column(align=True)
    col.operator("animate_anyone.shot_add", icon='ADD', text="")
    col.operator("animate_anyone.shot_remove", icon='REMOVE', text="")
    col.separator()
    col.operator("animate_anyone.shots_from_markers", icon='MARKER_HLT', text="")
    if not len(settings.shots):
        layout.label(text="No shot list: the settings below render one shot. Add shots from camera markers with the marker button.", icon='INFO')


def draw_shot_editor(layout, context, scene, item) -> None:
    """The active shot's own settings; a group it does not override shows the scene's values, greyed."""
    box = layout.box()
    box.label(text=f"Shot '{item.name}'", icon='SEQUENCE')
    col = box.column(align=True)
    col.prop(item, "frame_start")
    col.prop(item, "frame_end")
    col = box.column()
    col.prop(item, "camera")
    col.prop(item, "armature")
    draw_reference(col, item, scale=4.0)
    col.prop(item, "seed")
    defaults = scene.animate_anyone
    for group in OVERRIDE_GROUPS:
        col = box.column(align=True)
        col.prop(item, f"override_{group}")
        sub = col.column(align=True)
        own = getattr(item, f"override_{group}")
        sub.active = own
        draw_settings(sub, item if own else defaults, group, skip=("seed",))
    draw_versions(box, scene, item)


def draw_versions(layout, scene, item) -> None:
    col = layout.column()
    col.label(text="Versions (the strip shows the picked one):", icon='FILE_FOLDER')
    row = col.row()
    row.template_list("ANIMATE_ANYONE_UL_versions", "", item, "versions", item, "version_index", rows=2)
    side = row.column(align=True)
    side.operator("animate_anyone.versions_refresh", icon='FILE_REFRESH', text="")
    side.operator("animate_anyone.version_delete", icon='TRASH', text="")
    if len(item.versions):
        col.operator("animate_anyone.version_render_again", icon='RECOVER_LAST')
    entry = runtime.queue.find(scene.name, item.name)
    if entry is not None and entry.state == "running":
        draw_live_preview(col, entry.progress)


_live_key = [""]


def draw_live_preview(layout, progress) -> None:
    """The latest finished frame of a running job, as a thumbnail (the frames so far are in the strip)."""
    path = getattr(progress, "latest_frame", "") if progress is not None else ""
    if not path:
        return
    layout.label(text=f"Latest frame: {path.rsplit('/', 1)[-1]}", icon='IMAGE_DATA')
    icon = frame_preview_icon(path)
    if icon:
        layout.template_icon(icon_value=icon, scale=6.0)


def frame_preview_icon(path: str) -> int:
    """Icon id of a frame's thumbnail; the previous live frame is dropped from the collection."""
    if _previews is None or not path:
        return 0
    if _live_key[0] and _live_key[0] != path and _live_key[0] in _previews:
        _previews.pop(_live_key[0])  # one live thumbnail at a time
    _live_key[0] = path
    if path not in _previews:
        try:
            _previews.load(path, path, 'IMAGE')
        except (KeyError, RuntimeError):
            return 0
    return _previews[path].icon_id


# -- the queue panel --------------------------------------------------------------------------------
def draw_queue(layout, queue) -> None:
    """Each queued shot with its state: waiting, running (progress bar with ETA), done, failed
    (the error and what to do), cancelled; cancel one or all, retry a failed or cancelled one."""
    if not queue.entries:
        layout.label(text="The queue is empty: 'Render All Shots' or 'Render Selected' fills it.", icon='INFO')
        return
    layout.label(text=queue.summary())
    for index, entry in enumerate(queue.entries):
        box = layout.box()
        row = box.row(align=True)
        label = entry.shot_name + (f" {entry.version}" if entry.version else "")
        if entry.state == "running":
            row.label(text=label, icon=STATE_ICONS["running"])
            row.operator("animate_anyone.queue_cancel", icon='CANCEL', text="").index = index
            box.progress(factor=entry.factor(), type='BAR', text=entry.progress.text() if entry.progress is not None else "Starting...")
            draw_live_preview(box, entry.progress)
            continue
        row.label(text=entry.text(), icon=STATE_ICONS[entry.state])
        if entry.state == "waiting":
            row.operator("animate_anyone.queue_cancel", icon='X', text="").index = index
        elif entry.state in ("error", "cancelled"):
            row.operator("animate_anyone.queue_retry", icon='FILE_REFRESH', text="Retry").index = index
            if entry.state == "error" and entry.hint:
                box.label(text=entry.hint, icon='INFO')
    row = layout.row(align=True)
    if queue.active:
        row.operator("animate_anyone.queue_cancel", icon='CANCEL', text="Cancel All").index = -1
    row.operator("animate_anyone.queue_clear", icon='TRASH')


class ANIMATE_ANYONE_PT_queue(bpy.types.Panel):
    bl_label = "Animate Anyone Queue"
    bl_idname = "ANIMATE_ANYONE_PT_queue"
    bl_space_type = 'PROPERTIES'
    bl_region_type = 'WINDOW'
    bl_context = "output"

    def draw(self, context):
        draw_queue(self.layout, runtime.queue)


def draw_timeline_button(self, context):
    """Appended to the Dope Sheet header; shown in its Timeline mode only."""
    space = context.space_data
    if getattr(space, "mode", None) != 'TIMELINE':
        return
    progress = runtime.status.get(context.scene.name)
    layout = self.layout
    running = runtime.queue.running
    if running is not None and running.progress is not None and (progress is None or progress.finished):
        progress = running.progress
    if progress is not None and progress.state in ("starting", "running", "cancelling"):
        row = layout.row(align=True)
        row.progress(factor=progress.factor(), type='BAR', text=progress.text())
        row.operator("animate_anyone.cancel", icon='CANCEL', text="")
    else:
        layout.operator("animate_anyone.render", icon='RENDER_ANIMATION', text="Animate Anyone")


classes = (ANIMATE_ANYONE_UL_shots, ANIMATE_ANYONE_UL_versions, ANIMATE_ANYONE_PT_shot, ANIMATE_ANYONE_PT_queue)


def register():
    global _previews
    import bpy.utils.previews

    _previews = bpy.utils.previews.new()
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.DOPESHEET_HT_header.append(draw_timeline_button)


def unregister():
    global _previews
    bpy.types.DOPESHEET_HT_header.remove(draw_timeline_button)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
