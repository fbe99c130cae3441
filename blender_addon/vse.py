"""Finished frames -> ONE image-sequence strip in the Video Sequence Editor.

The strip collection is `sequence_editor.strips` from Blender 4.4 on and `.sequences` before
(removed in 5.0); in 5.0 the sequencer may show another scene (`context.sequencer_scene`).
"""

from __future__ import annotations

from pathlib import Path

import bpy

MAX_CHANNEL = 128


def sequencer_scene(context=None, fallback=None):
    context = context or bpy.context
    return getattr(context, "sequencer_scene", None) or fallback or context.scene


def strips_of(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def all_strips(editor):
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def free_channel(editor, frame_start: int, frame_end: int, lowest: int = 1, skip: str = "") -> int:
    """The lowest channel with no strip overlapping [frame_start, frame_end] (inclusive)."""
    busy = set()
    for strip in all_strips(editor):
        if strip.name == skip:
            continue
        if strip.frame_final_start <= frame_end and strip.frame_final_end > frame_start:
            busy.add(strip.channel)
    for channel in range(lowest, MAX_CHANNEL + 1):
        if channel not in busy:
            return channel
    raise RuntimeError("Every VSE channel is taken over this frame range.")


def import_image_sequence(scene, frames: list[str | Path], frame_start: int, name: str, lowest_channel: int = 1):
    """Add `frames` (one folder, in order) as one image strip named `name` starting at `frame_start`.

    A strip of the same name (an earlier render of this shot) is replaced, on the same channel when free.
    Returns the strip.
    """
    if not frames:
        raise ValueError("no frames to import")
    frames = [Path(f) for f in frames]
    folder = frames[0].parent
    if any(f.parent != folder for f in frames):
        raise ValueError("the frames of one strip must share one folder")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = strips_of(editor)
    old = strips.get(name)
    channel = None
    if old is not None:
        channel = old.channel
        strips.remove(old)
    frame_end = frame_start + len(frames) - 1
    if channel is None or channel != free_channel(editor, frame_start, frame_end, lowest=channel):
        channel = free_channel(editor, frame_start, frame_end, lowest=lowest_channel)
    strip = strips.new_image(name=name, filepath=str(frames[0]), channel=channel, frame_start=frame_start, fit_method='FIT')
    for frame in frames[1:]:
        strip.elements.append(frame.name)
    # new_image sizes the strip for one image; with the elements appended it spans them all.
    if strip.frame_final_duration != len(frames):
        strip.frame_final_duration = len(frames)
    return strip


def blend_relative(folder: str | Path) -> str:
    """The folder as Blender stores it in a strip: relative to the .blend ("//...") when the
    .blend is saved and Blender can express it so (same drive), else absolute. Ends with a separator."""
    folder = str(folder)
    if bpy.data.filepath:
        try:
            folder = bpy.path.relpath(folder)
        except ValueError:  # another drive (Windows): absolute it stays
            pass
    return folder.rstrip("/\\") + "/"


def find_strip(scene, name: str):
    editor = scene.sequence_editor
    return all_strips(editor).get(name) if editor is not None else None


def show_frames(scene, name: str, frames: list[str | Path], frame_start: int, lowest_channel: int = 1):
    """The strip `name` shows `frames` (one folder, in order): a strip of that name is changed in
    place (same place, channel and strip settings: switching a shot's version, or a live strip
    growing as frames arrive); otherwise one is added at `frame_start` on the lowest free channel.
    The folder is stored relative to the .blend where possible. Returns the strip."""
    if not frames:
        raise ValueError("no frames to show")
    frames = [Path(f) for f in frames]
    folder = frames[0].parent
    if any(f.parent != folder for f in frames):
        raise ValueError("the frames of one strip must share one folder")
    strip = find_strip(scene, name)
    if strip is None or strip.type != 'IMAGE':
        if strip is not None:
            strips_of(scene.sequence_editor).remove(strip)
        strip = import_image_sequence(scene, frames, frame_start, name, lowest_channel)
    else:
        elements = strip.elements
        while len(elements) > len(frames):
            elements.pop(len(elements) - 1)
        for element, frame in zip(elements, frames):
            element.filename = frame.name
        for frame in frames[len(elements):]:
            elements.append(frame.name)
        if strip.frame_final_duration != len(frames):
            strip.frame_final_duration = len(frames)
    strip.directory = blend_relative(folder)
    return strip


def frame_size(path: str | Path) -> tuple[int, int]:
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        return tuple(image.size)
    finally:
        bpy.data.images.remove(image)


def match_scene_to_frames(scene, frames: list[str | Path]) -> tuple[int, int]:
    """Set the scene's render size to the frames' size (100%); returns it."""
    w, h = frame_size(frames[0])
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    return w, h
