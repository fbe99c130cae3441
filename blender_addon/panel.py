"""The panel (Properties > Output > Animate Anyone) and the render button in the Timeline header.

Drawing reads `runtime.status` (what the last render did) and never changes anything.
"""

import bpy

from . import runtime
from .contract import settings as contract_settings
from .errors import UserError
from .shot import shot_resolution


def draw_settings(layout, settings, group: str) -> None:
    """The shot's fields for one group of the contract's settings, in declaration order."""
    for setting in contract_settings.SETTINGS:
        if setting.group == group and setting.addon_property:
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
        state = progress.state if progress is not None else "idle"

        # -- what to animate --
        col = layout.column()
        col.prop(settings, "reference_source", expand=True)
        if settings.reference_source == 'FILE':
            col.prop(settings, "reference_path")
            icon = reference_preview_icon(settings.reference_path)
            if icon:
                col.template_icon(icon_value=icon, scale=6.0)
        else:
            col.template_ID(settings, "reference_image", open="image.open")
            image = settings.reference_image
            if image is not None and image.preview is not None:
                col.template_icon(icon_value=image.preview.icon_id, scale=6.0)
        col.prop(settings, "armature")
        if settings.armature is None:
            active = context.active_object if hasattr(context, "active_object") else None
            col.label(text=f"Using the active armature: {active.name}" if active is not None and active.type == 'ARMATURE' else "Pick an armature (or select one)", icon='ARMATURE_DATA')
        _prop_with_placeholder(col, settings, "bone_map", "Auto-detect")
        armature = settings.armature or (context.active_object if getattr(context, "active_object", None) is not None and context.active_object.type == 'ARMATURE' else None)
        if armature is not None and not settings.bone_map:
            col.label(text=_detected_bone_map(armature), icon='BONE_DATA')
        row = col.row(align=True)
        row.prop(settings, "hands", toggle=True)
        row.prop(settings, "face", toggle=True)
        if scene.camera is None:
            col.label(text="The scene has no camera: the maps are drawn from the scene camera", icon='ERROR')

        # -- pose rescaling (docs/pose_rescaling.md) --
        col = layout.column()
        col.prop(settings, "rescale")
        sub = col.column()
        sub.active = settings.rescale
        sub.prop(settings, "rescale_source", expand=True)
        if settings.rescale_source == 'FRAME':
            sub.prop(settings, "reference_pose_frame")
        else:
            sub.prop(settings, "reference_keypoints")
        sub.prop(settings, "align_first_frame")
        row = sub.row()
        row.active = settings.rescale and not settings.align_first_frame
        row.prop(settings, "align_frame")

        # -- frames and size --
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

        # -- generation: the contract's settings, by group --
        for group in ("sampling", "context", "output"):
            draw_settings(layout.column(align=True), settings, group)
        col = layout.column()
        _prop_with_placeholder(col, settings, "shot_name", scene.name)
        col.prop(settings, "output_dir")
        col.prop(settings, "import_pose_preview")

        # -- state --
        box = layout.box()
        if state in ("starting", "running", "cancelling"):
            draw_progress(box, progress)
            box.operator("animate_anyone.cancel", icon='CANCEL', text="Cancel (Esc)")
            return
        if state == "error":
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
        box.operator("animate_anyone.render", icon='RENDER_ANIMATION', text="Render Again" if state == "done" else "Render")
        draw_engine_status(layout)


def draw_timeline_button(self, context):
    """Appended to the Dope Sheet header; shown in its Timeline mode only."""
    space = context.space_data
    if getattr(space, "mode", None) != 'TIMELINE':
        return
    progress = runtime.status.get(context.scene.name)
    layout = self.layout
    if progress is not None and progress.state in ("starting", "running", "cancelling"):
        row = layout.row(align=True)
        row.progress(factor=progress.factor(), type='BAR', text=progress.text())
        row.operator("animate_anyone.cancel", icon='CANCEL', text="")
    else:
        layout.operator("animate_anyone.render", icon='RENDER_ANIMATION', text="Animate Anyone")


classes = (ANIMATE_ANYONE_PT_shot,)


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
