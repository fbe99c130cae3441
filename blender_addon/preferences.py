"""Add-on preferences: where the engine is and how it runs (Local: a subprocess here; Remote: an
engine on another machine, docs/remote.md), and the "Test Connection" button for a remote one."""

import os
import uuid
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from .engine_client import EngineSettings, describe_remote_engine
from .engine_setup import venv_python
from .errors import AddonError, UserError
from .runtime import BackgroundStatus

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
    engine_mode: EnumProperty(
        name="Engine",
        items=[('LOCAL', "Local", "Start the engine on this computer (needs its Python environment and, ideally, a GPU)"),
               ('REMOTE', "Remote", "Use an engine on another machine (`aa_engine serve --listen`): inputs are uploaded, frames come back")],
        default='LOCAL',
    )
    engine_address: StringProperty(
        name="Host:Port",
        description="Where the remote engine listens, e.g. 192.168.1.20:7860 (or 127.0.0.1:7860 through an SSH tunnel)",
        default="",
    )
    remote_token: StringProperty(
        name="Token",
        description="The remote engine's token: the content of its token file (printed by the engine at start)",
        subtype='PASSWORD', default="",
    )
    tls_ca_file: StringProperty(
        name="TLS CA File",
        description="Use TLS, trusting this certificate or CA file (PEM; the engine's --tls-cert for a self-signed one)",
        subtype='FILE_PATH', default="",
    )
    tls_fingerprint: StringProperty(
        name="TLS Fingerprint",
        description="Use TLS, trusting only the certificate with this SHA-256 fingerprint (hex; `openssl x509 -noout -fingerprint -sha256`)",
        default="",
    )

    def draw(self, context):
        from .panel import draw_engine_status

        layout = self.layout
        layout.row().prop(self, "engine_mode", expand=True)
        col = layout.column()
        if self.engine_mode == 'REMOTE':
            col.prop(self, "engine_address")
            col.prop(self, "remote_token")
            col.prop(self, "tls_ca_file")
            col.prop(self, "tls_fingerprint")
            col.operator("animate_anyone.test_connection", icon='URL')
            draw_connection_status(col)
            return
        col.prop(self, "engine_python")
        row = col.row(align=True)
        row.prop(self, "engine_source")
        row.operator("animate_anyone.setup_engine", icon='CONSOLE')
        col.prop(self, "weights")
        row = col.row()
        row.prop(self, "device")
        row.prop(self, "precision")
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
        settings = EngineSettings(bpy.path.abspath(prefs.engine_python) if prefs.engine_python else "", prefs.weights, prefs.device, prefs.precision)
        if prefs.engine_mode == 'REMOTE':
            settings.address = prefs.engine_address.strip()
            settings.token = prefs.remote_token.strip()
            settings.tls_ca = bpy.path.abspath(prefs.tls_ca_file) if prefs.tls_ca_file else ""
            settings.tls_fingerprint = prefs.tls_fingerprint.strip()
            if not settings.address:
                raise AddonError("Engine is set to Remote but Host:Port is empty.",
                                 "In the add-on preferences, enter the engine machine's address (e.g. 192.168.1.20:7860), or set Engine to Local.")
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
    if settings.address and not settings.client_id:
        settings.client_id = client_id()
    return settings


def client_id() -> str:
    """This Blender's stable random id for remote engines (jobs belong to it: after a restart it can
    still collect them), kept in the add-on's user folder."""
    path = user_folder(create=True) / "remote_client_id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if 16 <= len(value) <= 128:
            return value
    except OSError:
        pass
    value = uuid.uuid4().hex + uuid.uuid4().hex
    try:
        path.write_text(value + "\n", encoding="utf-8")
        os.chmod(path, 0o600)
    except OSError:
        pass  # a read-only user folder: an id for this session only
    return value


# -- Test Connection ------------------------------------------------------------------------------
connection_status = BackgroundStatus()


def draw_connection_status(layout) -> None:
    status = connection_status
    if status.state == "idle":
        return
    box = layout.box()
    if status.state == "running":
        box.label(text="Connecting...", icon='TIME')
    elif status.state == "error":
        box.label(text=status.message, icon='ERROR')
        if status.hint:
            box.label(text=status.hint, icon='INFO')
    else:
        box.label(text=status.message, icon='CHECKMARK')
    for line in status.lines[-6:]:
        box.label(text=line)


def _redraw_while_connecting():
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == 'PREFERENCES':
                area.tag_redraw()
    return 0.25 if connection_status.state == "running" else None


class ANIMATE_ANYONE_OT_test_connection(bpy.types.Operator):
    """Connect to the remote engine with the token and TLS settings above; show its device, model and queue"""

    bl_idname = "animate_anyone.test_connection"
    bl_label = "Test Connection"

    def execute(self, context):
        try:
            settings = engine_settings(context)
            if not settings.address:
                raise AddonError("Engine is set to Local: there is no remote engine to test.", "Set Engine to Remote and enter Host:Port.")
        except UserError as exc:
            connection_status.state, connection_status.message, connection_status.hint, connection_status.lines = "error", exc.message, exc.hint, []
            self.report({'ERROR'}, exc.message + (f" {exc.hint}" if exc.hint else ""))
            return {'CANCELLED'}

        def work(status):
            status.lines.extend(describe_remote_engine(settings))
            status.message = f"The remote engine at {settings.address} works."

        connection_status.run(work)
        if bpy.app.background:
            connection_status.join()
            if connection_status.state == "error":
                self.report({'ERROR'}, connection_status.message + (f" {connection_status.hint}" if connection_status.hint else ""))
                return {'CANCELLED'}
            self.report({'INFO'}, "; ".join(connection_status.lines))
            return {'FINISHED'}
        if not bpy.app.timers.is_registered(_redraw_while_connecting):
            bpy.app.timers.register(_redraw_while_connecting, first_interval=0.25)
        return {'FINISHED'}


classes = (AnimateAnyonePreferences, ANIMATE_ANYONE_OT_test_connection)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister():
    if bpy.app.timers.is_registered(_redraw_while_connecting):
        bpy.app.timers.unregister(_redraw_while_connecting)
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
