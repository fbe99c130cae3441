"""The shot settings stored in the .blend (`scene.animate_anyone`).

`scene.animate_anyone` holds the scene's default shot settings (the single-shot workflow renders
them as they are) and the shot list (`shots`, `shot_index`): each shot has its frame range,
camera, armature, reference, seed, its own copy of the generation settings with an override flag
per group, and its versions."""

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty
from bpy.types import PropertyGroup

from .contract import settings as contract_settings

INT32_MAX = 2**31 - 1  # Blender's IntProperty is a signed 32-bit integer


# Blender 4.5+ warns about (and flags) "//" paths unless the property says it takes them.
_BLEND_RELATIVE = {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (4, 5, 0) else set()


def _is_armature(self, obj):
    return obj.type == 'ARMATURE'


class AnimateAnyoneShotSettings(PropertyGroup):
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
    reference_keypoints: StringProperty(name="Keypoints File", description="An aa-keypoints/1 track (.json) holding the reference character's keypoints in its first frame",
                                        subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
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

    output_dir: StringProperty(name="Output", description="Folder for the shot folders, each holding its versions v001, v002... (// = next to the .blend)",
                               subtype='DIR_PATH', default="//aa_renders/", options=_BLEND_RELATIVE)
    import_pose_preview: BoolProperty(name="Skeleton Preview Strip", description="Also import the skeleton maps as a second strip", default=False)
    write_skeleton_maps: BoolProperty(
        name="Write Skeleton Maps",
        description="Also write the skeleton maps as PNGs next to the keypoint track (poses/pose_00001.png...), for other tools. "
                    "The engine draws its own from the track; the Skeleton Preview Strip writes them too",
        default=False)


def setting_property(setting):
    """The Blender property of a contract setting: its label, help, default and range."""
    desc = setting.help[:1].upper() + setting.help[1:]
    common = {"name": setting.ui_label, "description": desc, "default": setting.property_default}
    if setting.type is bool:
        return BoolProperty(**common)
    if setting.choices:  # a drop-down of the declared values (sampler, preset)
        return EnumProperty(items=[(c, c, "") for c in setting.choices], **common)
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


def add_setting_properties(cls) -> None:
    """Give a PropertyGroup one property per contract setting the add-on shows (same name, label,
    help, default and range: declared once, in aa_contract/settings.py)."""
    for setting in contract_settings.SETTINGS:
        if setting.addon_property:
            cls.__annotations__[setting.name] = setting_property(setting)


add_setting_properties(AnimateAnyoneShotSettings)

# The groups of contract settings a shot of the shot list can override (the rest of a shot's
# settings come from the scene's, above). The seed is always the shot's own.
OVERRIDE_GROUPS = ("size", "sampling", "context", "output")


def _is_camera(self, obj):
    return obj.type == 'CAMERA'


def _version_picked(self, context):
    # The version picker: the shot's strip shows the picked version (same place and channel).
    from . import versions

    versions.on_version_picked(self, context)


class AnimateAnyoneVersion(PropertyGroup):
    """One version (take) of a shot: the folder <output>/<shot>/vNNN (name = "v001")."""

    state: StringProperty(name="State", description="rendering, done, failed or cancelled (from the version's version.json)", default="")
    seed: IntProperty(name="Seed", default=0)
    summary: StringProperty(name="Summary", description="The version's settings in one line", default="")


class AnimateAnyoneShot(PropertyGroup):
    """One shot of the scene's shot list (`name` = the shot's name: its folder and strip)."""

    selected: BoolProperty(name="Selected", description="Render this shot with 'Render Selected'", default=True)
    frame_start: IntProperty(name="Start", description="The shot's first frame", default=1, min=0)
    frame_end: IntProperty(name="End", description="The shot's last frame", default=24, min=0)
    camera: PointerProperty(name="Camera", description="The camera the skeleton is seen through (empty: the scene camera at the shot's frames)", type=bpy.types.Object, poll=_is_camera)
    armature: PointerProperty(name="Armature", description="The rig to follow (empty: the scene's default)", type=bpy.types.Object, poll=_is_armature)
    reference_source: EnumProperty(
        name="Reference",
        items=[('DEFAULT', "Scene's", "The reference of the scene's default settings"),
               ('FILE', "File", "A PNG or JPG file on disk"), ('IMAGE', "Image", "An image datablock in this file")],
        default='DEFAULT',
    )
    reference_path: StringProperty(name="Reference Image", description="This shot's character: one image, full body", subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
    reference_image: PointerProperty(name="Reference Image", type=bpy.types.Image)
    versions: CollectionProperty(type=AnimateAnyoneVersion)
    version_index: IntProperty(name="Version", description="The version the shot's strip shows", default=0, min=0, update=_version_picked)


for _group in OVERRIDE_GROUPS:
    AnimateAnyoneShot.__annotations__[f"override_{_group}"] = BoolProperty(
        name=f"Override {_group.capitalize()}", description=f"This shot has its own {_group} settings (off: the scene's)", default=False)
# The shot's own values of the settings (used where its group is overridden; the seed always).
add_setting_properties(AnimateAnyoneShot)

# The shot list and the active shot live with the scene's default settings.
AnimateAnyoneShotSettings.__annotations__["shots"] = CollectionProperty(type=AnimateAnyoneShot)
AnimateAnyoneShotSettings.__annotations__["shot_index"] = IntProperty(name="Active Shot", default=0, min=0)


classes = (AnimateAnyoneVersion, AnimateAnyoneShot, AnimateAnyoneShotSettings)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.animate_anyone = PointerProperty(type=AnimateAnyoneShotSettings)


def unregister():
    del bpy.types.Scene.animate_anyone
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
