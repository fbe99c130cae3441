"""Animate Anyone for Blender: keyframed armature + one reference image -> an image-sequence strip.

Importable without bpy (the engine imports `blender_addon.skeleton.draw` to draw skeleton maps), so
the bpy-dependent modules are imported inside register()/unregister() only.
Installs as a Blender 4.2+ extension (blender_manifest.toml) or as a legacy add-on (bl_info).
"""

bl_info = {
    "name": "Animate Anyone",
    "author": "Animate Anyone for Blender contributors",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "Properties > Output > Animate Anyone; Timeline header",
    "description": "Turn an armature's animation and one reference image into a video strip (Animate Anyone)",
    "category": "Animation",
}

_MODULES = ("properties", "preferences", "operators", "panel")


def _modules():
    import importlib

    return [importlib.import_module(f"{__package__}.{name}") for name in _MODULES]


def register():
    for module in _modules():
        module.register()


def unregister():
    from . import runtime

    runtime.reset()  # stop the engine and any job before the classes go
    for module in reversed(_modules()):
        module.unregister()
