"""The shot settings stored in the .blend (`scene.animate_anyone`)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .contract import settings as contract_settings

INT32_MAX = 2**31 - 1  # Blender's IntProperty is a signed 32-bit integer


# Blender 4.5+ warns about (and flags) "//" paths unless the property says it takes them.
_BLEND_RELATIVE = {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (4, 5, 0) else set()


def _is_armature(self, obj):
    return obj.type == 'ARMATURE'


class AnimateAnyoneShotSettings(bpy.types.PropertyGroup):
    shot_name: StringProperty(name="Shot", description="Name of the shot's folder and strip (default: the scene's name)", default="")
    reference_source: EnumProperty(
        name="Reference",
        items=[('FILE', "File", "A PNG or JPG file on disk"), ('IMAGE', "Image", "An image datablock in this file")],
        default='FILE',
    )
    reference_path: StringProperty(name="Reference Image", description="The character to animate: one image, full body", subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
    reference_image: PointerProperty(name="Reference Image", type=bpy.types.Image)
    armature: PointerProperty(name="Armature", description="The rig to follow (default: the active armature)", type=bpy.types.Object, poll=_is_armature)
    bone_map: StringProperty(name="Bone Map", description="Empty = detect (Rigify, Mixamo, bundled rig); or a bundled map's name or a .json map", default="")
    hands: BoolProperty(name="Hands", description="Draw hand keypoints when the rig has finger bones", default=False)
    face: BoolProperty(name="Face", description="Draw face keypoints when the rig has them", default=False)

    # Pose rescaling (docs/pose_rescaling.md): the skeleton takes the reference character's proportions.
    rescale: BoolProperty(name="Rescale to Reference", description="Give the skeleton the limb lengths and place of the character in the reference image", default=False)
    rescale_source: EnumProperty(
        name="Reference Pose",
        items=[('FRAME', "Rig Pose at a Frame", "This armature, posed like the reference character at a chosen frame (e.g. one outside the shot)"),
               ('FILE', "Keypoints File", "An aa-keypoints/1 track of the reference character (its first frame is used)")],
        default='FRAME',
    )
    reference_pose_frame: IntProperty(name="Reference Pose Frame", description="The frame where the armature is posed like the character in the reference image", default=0)
    reference_keypoints: StringProperty(name="Keypoints File", description="An aa-keypoints/1 track (.json) holding the reference character's keypoints in its first frame", subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
    align_first_frame: BoolProperty(name="Align at First Frame", description="Measure the rig's proportions at the shot's first frame", default=True)
    align_frame: IntProperty(name="Alignment Frame", description="The frame of the shot posed most like the reference image: the rig's limbs are measured there", default=1)

    use_scene_range: BoolProperty(name="Scene Frame Range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=24, min=0)

    size_source: EnumProperty(
        name="Size",
        items=[('NATIVE', "Model's Size", "The size the model was trained at (the engine says which): its best quality"),
               ('RENDER', "Render Resolution", "The scene's render resolution, rounded to multiples of 8"),
               ('CUSTOM', "Custom", "The width and height below")],
        default='NATIVE',
    )
    # The generation settings (steps, guidance, seed, context window, width/height...) are added
    # below from the contract's declaration: aa_contract/settings.py.

    output_dir: StringProperty(name="Output", description="Folder for the shot folders (// = next to the .blend)", subtype='DIR_PATH', default="//animate_anyone/", options=_BLEND_RELATIVE)
    import_pose_preview: BoolProperty(name="Skeleton Preview Strip", description="Also import the skeleton maps as a second strip", default=False)


def setting_property(setting):
    """The Blender property of a contract setting: its label, help, default and range."""
    desc = setting.help[:1].upper() + setting.help[1:]
    common = {"name": setting.ui_label, "description": desc, "default": setting.property_default}
    if setting.type is bool:
        return BoolProperty(**common)
    limits = {}
    if setting.minimum is not None:
        limits["min"] = setting.minimum
    if setting.maximum is not None:
        limits["max"] = min(setting.maximum, INT32_MAX) if setting.type is int else setting.maximum
    if setting.soft_max is not None:
        limits["soft_max"] = setting.soft_max
    if setting.type is int:
        return IntProperty(**common, **{k: int(v) for k, v in limits.items()})
    if setting.type is float:
        return FloatProperty(**common, **limits)
    return StringProperty(**common)


for _setting in contract_settings.SETTINGS:
    if _setting.addon_property:
        AnimateAnyoneShotSettings.__annotations__[_setting.name] = setting_property(_setting)


classes = (AnimateAnyoneShotSettings,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.animate_anyone = PointerProperty(type=AnimateAnyoneShotSettings)


def unregister():
    del bpy.types.Scene.animate_anyone
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
