"""Add-on preferences: where the engine is and how it runs."""

import os
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from .engine_client import EngineSettings
from .engine_setup import venv_python

ADDON_PACKAGE = __package__


def user_folder(create: bool = False) -> Path:
    """The add-on's writable folder: the extension's user folder, or (legacy add-on) a data folder."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, create=create))
    except (ValueError, KeyError, AttributeError):
        path = Path(bpy.utils.user_resource('DATAFILES', path="animate_anyone", create=create))
        return path


def engine_env_dir() -> Path:
    return user_folder(create=True) / "engine-env"


class AnimateAnyonePreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    engine_python: StringProperty(
        name="Engine Python",
        description="The Python of the engine environment (has torch and aa_engine). Empty: the one made by 'Set Up Engine Environment'",
        subtype='FILE_PATH', default="",
    )
    engine_source: StringProperty(
        name="Engine Source",
        description="For 'Set Up Engine Environment': the Animate Anyone project folder (with pyproject.toml) or an aa_engine wheel",
        subtype='FILE_PATH', default="",
    )
    weights: StringProperty(
        name="Weights",
        description="Weights folder (a Moore-AnimateAnyone release or one of ours); 'random-tiny' for a test model; empty: the engine's default",
        subtype='DIR_PATH', default="",
    )
    device: EnumProperty(
        name="Device",
        items=[('auto', "Auto", "CUDA, then MPS, then CPU"), ('cuda', "CUDA", "NVIDIA GPU"), ('mps', "MPS", "Apple GPU"), ('cpu', "CPU", "Slow; for tests")],
        default='auto',
    )
    precision: EnumProperty(
        name="Precision",
        items=[('auto', "Auto", "fp16 on a GPU, fp32 on the CPU"), ('fp32', "FP32", ""), ('fp16', "FP16", ""), ('bf16', "BF16", "")],
        default='auto',
    )
    engine_address: StringProperty(
        name="Remote Engine",
        description="HOST:PORT of an engine started with `aa_engine serve --listen`; empty: start the engine on this computer. Paths must be valid on both machines (shared storage)",
        default="",
    )

    def draw(self, context):
        from .panel import draw_engine_status

        layout = self.layout
        col = layout.column()
        col.prop(self, "engine_python")
        row = col.row(align=True)
        row.prop(self, "engine_source")
        row.operator("animate_anyone.setup_engine", icon='CONSOLE')
        col.prop(self, "weights")
        row = col.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        col.prop(self, "engine_address")
        col.operator("animate_anyone.check_engine", icon='CHECKMARK')
        draw_engine_status(col)


def get_preferences(context=None):
    """The preferences, or None when the add-on was registered without the add-on system (tests)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


def engine_settings(context=None, **overrides) -> EngineSettings:
    """EngineSettings from the preferences; non-empty overrides (command line) win.

    Engine Python falls back to $AA_ENGINE_PYTHON, then to the environment made by the setup button.
    """
    prefs = get_preferences(context)
    settings = EngineSettings()
    if prefs is not None:
        settings = EngineSettings(bpy.path.abspath(prefs.engine_python) if prefs.engine_python else "", prefs.weights, prefs.device, prefs.precision, prefs.engine_address.strip())
    for name, value in overrides.items():
        if value:
            setattr(settings, name, value)
    if not settings.python:
        settings.python = os.environ.get("AA_ENGINE_PYTHON", "")
    if not settings.python:
        candidate = venv_python(engine_env_dir())
        if candidate.is_file():
            settings.python = str(candidate)
    if settings.weights and settings.weights != "random-tiny":
        settings.weights = bpy.path.abspath(settings.weights)
    return settings


classes = (AnimateAnyonePreferences,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
