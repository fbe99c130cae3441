"""The scene's shot list: shots from camera-bound markers or by hand, and each shot's settings as
the render sees them (the shot's own values where it has them, the scene's defaults elsewhere).

The render path (shot.py's plan_shot, export_poses, shot_settings) reads a settings object by
attribute; `ShotSettings` is such an object for one shot of the list, so the single-shot code
renders list shots unchanged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import bpy

from .contract import settings as contract_settings
from .errors import AddonError

STRIP_PREFIX = "AA "
DEFAULT_OUTPUT = "//aa_renders/"


class ShotSettings:
    """One shot's settings for the render: attribute access like the scene's settings group.

    Taken from the shot: its name, frame range, camera, armature (when set), reference (unless
    'Scene's'), seed, and the contract settings of every group it overrides (a size override also
    means a custom width and height). Everything else is the scene's default."""

    def __init__(self, defaults, item):
        object.__setattr__(self, "_defaults", defaults)
        object.__setattr__(self, "_item", item)

    def __getattr__(self, name):
        item, defaults = self._item, self._defaults
        if name == "shot_name":
            return item.name
        if name == "use_scene_range":
            return False
        if name in ("frame_start", "frame_end", "camera"):
            return getattr(item, name)
        if name == "armature":
            return item.armature or defaults.armature
        if name in ("reference_source", "reference_path", "reference_image"):
            return getattr(defaults if item.reference_source == 'DEFAULT' else item, name)
        if name == "size_source" and item.override_size:
            return 'CUSTOM'
        if name == "seed":
            return item.seed
        setting = contract_settings.BY_NAME.get(name)
        if setting is not None and setting.addon_property and getattr(item, f"override_{setting.group}", False):
            return getattr(item, name)
        return getattr(defaults, name)

    def __setattr__(self, name, value):
        raise AttributeError("ShotSettings is read-only: set the shot's or the scene's properties")


def settings_for(scene, item=None):
    """What a render of `item` (a shot of the list; None = the scene's single shot) reads."""
    defaults = scene.animate_anyone
    return defaults if item is None else ShotSettings(defaults, item)


def active_shot(scene):
    s = scene.animate_anyone
    return s.shots[s.shot_index] if 0 <= s.shot_index < len(s.shots) else None


def find_shot(scene, name: str):
    shot = scene.animate_anyone.shots.get(name)
    if shot is None:
        names = ", ".join(s.name for s in scene.animate_anyone.shots) or "none"
        raise AddonError(f"Scene '{scene.name}' has no shot named '{name}' (shots: {names}).",
                         "Add it with 'Add Shots from Markers' or '+' in the shot list, or use one of the names above.")
    return shot


def strip_name(item) -> str:
    return STRIP_PREFIX + bpy.path.clean_name(item.name)


def strip_scene(scene, context=None):
    """The scene whose sequencer holds the shots' strips: the sequencer's scene in 5.0 when it
    shows this one's context, else this scene."""
    from . import vse

    context = context or bpy.context
    return vse.sequencer_scene(context, scene) if scene == getattr(context, "scene", None) else scene


def output_base(settings) -> Path:
    """The folder holding the shot folders (the system temp folder while the .blend is unsaved)."""
    base = settings.output_dir or DEFAULT_OUTPUT
    if base.startswith("//") and not bpy.data.filepath:
        return Path(tempfile.gettempdir()) / "animate_anyone"
    return Path(bpy.path.abspath(base))


def shot_root(scene, item=None) -> Path:
    """<output>/<shot>: where the shot's versions are (nothing is created)."""
    settings = settings_for(scene, item)
    return output_base(settings) / bpy.path.clean_name(settings.shot_name or scene.name)


# -- making shots ----------------------------------------------------------------------------------
def new_shot(scene, name: str, frame_start: int, frame_end: int, camera=None):
    """Append a shot; its seed and settings start as the scene's defaults."""
    s = scene.animate_anyone
    taken = {shot.name for shot in s.shots}
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}.{n:03d}", n + 1
    shot = s.shots.add()
    shot.name = unique
    shot.frame_start, shot.frame_end = frame_start, frame_end
    shot.camera = camera
    for setting in contract_settings.SETTINGS:
        if setting.addon_property:
            setattr(shot, setting.name, getattr(s, setting.name))
    s.shot_index = len(s.shots) - 1
    return shot


def marker_ranges(scene) -> list[tuple[str, int, int, object]]:
    """(name, start, end, camera) per camera-bound marker, in frame order: a shot runs from its
    marker to the frame before the next camera marker (the last one to the scene's end frame),
    as Blender switches cameras. Ranges outside the scene's frames are clipped or left out."""
    markers = sorted((m for m in scene.timeline_markers if m.camera is not None), key=lambda m: m.frame)
    out = []
    for i, marker in enumerate(markers):
        start = max(marker.frame, scene.frame_start)
        end = (markers[i + 1].frame - 1) if i + 1 < len(markers) else scene.frame_end
        end = min(end, scene.frame_end)
        if end >= start:
            out.append((marker.name, start, end, marker.camera))
    return out


def shots_from_markers(scene) -> list:
    """One shot per camera-bound marker range. A shot of the same name is updated (range and
    camera), not duplicated, so running it again after moving markers is safe. Returns the shots."""
    ranges = marker_ranges(scene)
    if not ranges:
        raise AddonError(f"Scene '{scene.name}' has no timeline marker bound to a camera.",
                         "Add markers (M in the Timeline) and bind a camera to each (select the camera, then Marker > Bind Camera to Markers, Ctrl+B).")
    made = []
    for name, start, end, camera in ranges:
        shot = scene.animate_anyone.shots.get(name)
        if shot is None:
            shot = new_shot(scene, name, start, end, camera)
        else:
            shot.frame_start, shot.frame_end, shot.camera = start, end, camera
        made.append(shot)
    return made
