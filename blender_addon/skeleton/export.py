"""export_shot: an armature's animation -> skeleton maps (PNG) + keypoint track (JSON) (bpy).

For each frame of the range: `scene.frame_set` once, project the mapped bone points through the
scene camera (project.py), draw the map (draw.py), write out_dir/pose_00001.png ... (1-based, in
frame order), then the track out_dir/keypoints.json. The user's frame (and subframe) is restored
afterwards, also on error. Every bad input raises a PoseExportError with a message and a hint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import bone_maps
from .draw import BODY_NAMES
from .errors import BadFrameRange, BadSize, NoArmature, NothingInView
from .png import write_png
from .project import KeypointProjector, check_camera
from .track import MAP_NAME, TRACK_NAME, KeypointTrack, draw_frame, prepare_output, write_track


@dataclass
class ExportResult:
    map_paths: list[Path]
    track_path: Path
    bone_map_name: str
    missing_keypoints: list[str]          # e.g. "left_ear (no bone)", "right_wrist (out of view in 3 of 48 frames)"
    track: KeypointTrack
    prefix: str = ""
    missing_bones: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, summed over frames


def resolve_for_armature(armature, bone_map=None) -> bone_maps.ResolvedMap:
    """The bone map bound to this armature: detected (None/""), a bundled name, or a .json path."""
    names = armature.data.bones.keys()
    if not bone_map:
        return bone_maps.detect_bone_map(names)
    chosen = bone_maps.find_bone_map(bpy.path.abspath(bone_map) if bone_map.startswith("//") else bone_map)
    return bone_maps.check_resolved(bone_maps.resolve_bone_map(chosen, names))


def detect_bone_map(armature):
    """(BoneMap, missing bone names) of the bundled map that fits this armature best."""
    resolved = resolve_for_armature(armature)
    return resolved.bone_map, resolved.missing_bones


def _enabled_objects(view_layer) -> set[str]:
    """Names of the objects reachable through collections neither excluded from the view layer
    nor disabled in viewports."""
    names, stack = set(), [view_layer.layer_collection]
    while stack:
        layer_coll = stack.pop()
        if layer_coll.exclude or layer_coll.collection.hide_viewport:
            continue
        names.update(o.name for o in layer_coll.collection.objects)
        stack.extend(layer_coll.children)
    return names


def _view_layer(scene):
    context_layer = getattr(bpy.context, "view_layer", None)
    if context_layer is not None and getattr(bpy.context, "scene", None) == scene:
        return context_layer
    return scene.view_layers[0]


def _check_inputs(scene, armature, frame_start, frame_end, width, height):
    if armature is None or getattr(armature, "type", None) != 'ARMATURE':
        what = "nothing" if armature is None else f"'{armature.name}' ({armature.type.lower()})"
        raise NoArmature(f"The pose export needs an armature object, got {what}.", "Pick an armature in 'Armature'.")
    if armature.name not in scene.objects:
        raise NoArmature(f"The armature '{armature.name}' is not in scene '{scene.name}'.", "Pick an armature of this scene.")
    # Blender does not evaluate (animate) objects disabled in viewports or in excluded collections:
    # the export would silently draw one frozen pose.
    if armature.hide_viewport or armature.name not in _enabled_objects(_view_layer(scene)):
        raise NoArmature(
            f"The armature '{armature.name}' is disabled in viewports (the object, one of its collections, or an excluded "
            "collection), so Blender does not animate it.",
            "In the Outliner, enable it and its collections in viewports (monitor icon) and tick its collection's checkbox; "
            "hiding it with the eye icon is fine.",
        )
    if int(frame_end) < int(frame_start):
        raise BadFrameRange(f"The frame range {frame_start}-{frame_end} is empty.", "Set an end frame at or after the start frame.")
    if int(width) <= 0 or int(height) <= 0:
        raise BadSize(f"The map size {width}x{height} is not a positive size.", "Use the render resolution, e.g. 512x768.")


def _missing_report(resolved, counts, total) -> list[str]:
    report = [f"{name} (no bone)" for name in resolved.unmapped]
    for i, name in enumerate(BODY_NAMES):
        if name not in resolved.unmapped and counts[i]:
            report.append(f"{name} (out of view in {counts[i]} of {total} frames)")
    return report


def _remove_stale_maps(out: Path, keep: int) -> None:
    """Delete pose_NNNNN.png left from a longer earlier export, so the folder holds one shot."""
    for path in out.glob("pose_*.png"):
        stem = path.stem[len("pose_"):]
        if stem.isdigit() and int(stem) > keep:
            path.unlink(missing_ok=True)


def export_shot(scene, armature, out_dir: str, frame_start: int, frame_end: int, width: int, height: int,
                bone_map=None, hands: bool = False, face: bool = False, progress=None, *,
                camera=None, fps: float | None = None, write_maps: bool = True) -> ExportResult:
    """Write out_dir/pose_00001.png ... and out_dir/keypoints.json for frames frame_start..frame_end.

    bone_map: None/"" = detect; a bundled map name ("rigify", "mixamo", "bundled"); or a .json path.
    hands/face: also project and draw them where the map and rig have them.
    progress: called as progress(done, total) after each frame.
    camera: project through this camera instead of the scene's (per-frame) active camera.
    write_maps: False writes only the track (maps can be drawn later from it).
    """
    _check_inputs(scene, armature, frame_start, frame_end, width, height)
    width, height = int(width), int(height)
    frames = list(range(int(frame_start), int(frame_end) + 1))
    check_camera(scene, camera)
    resolved = resolve_for_armature(armature, bone_map)
    projector = KeypointProjector(armature, resolved, hands=hands, face=face)
    notes = []
    if hands and not projector.hands:
        notes.append(f"Hands not drawn: the bone map '{resolved.bone_map.name}' finds no finger bones on this rig.")
    if face and not projector.face:
        notes.append(f"Face not drawn: the bone map '{resolved.bone_map.name}' has no face points for this rig.")
    out = prepare_output(out_dir)
    timings = {"evaluate": 0.0, "project": 0.0, "draw": 0.0, "write_png": 0.0}
    keypoints, paths, cameras = [], [], []
    out_of_view = [0] * len(BODY_NAMES)
    empty_frames = []
    user_frame, user_subframe = scene.frame_current, scene.frame_subframe
    try:
        for n, f in enumerate(frames):
            t0 = time.perf_counter()
            scene.frame_set(f)
            t1 = time.perf_counter()
            cam = check_camera(scene, camera)  # markers may switch the active camera per frame
            if cam.name not in cameras:
                cameras.append(cam.name)
            fk = projector.frame_keypoints(f, scene, cam, width, height)
            keypoints.append(fk)
            for i in range(len(BODY_NAMES)):
                if not fk.body[i, 2] > 0:
                    out_of_view[i] += 1
            if not (fk.body[:, 2] > 0).any():
                empty_frames.append(f)
            t2 = time.perf_counter()
            timings["evaluate"] += t1 - t0
            timings["project"] += t2 - t1
            if write_maps:
                image = draw_frame(width, height, fk)
                t3 = time.perf_counter()
                path = out / MAP_NAME.format(n + 1)
                write_png(path, image)
                paths.append(path)
                timings["draw"] += t3 - t2
                timings["write_png"] += time.perf_counter() - t3
            if progress is not None:
                progress(n + 1, len(frames))
    finally:
        scene.frame_set(user_frame, subframe=user_subframe)
    if write_maps:
        _remove_stale_maps(out, len(paths))
    render = scene.render
    track = KeypointTrack(
        width=width, height=height, fps=float(fps) if fps else round(render.fps / (render.fps_base or 1.0), 3), frames=keypoints,
        source={"blend_file": bpy.data.filepath, "scene": scene.name, "armature": armature.name,
                "bone_map": resolved.bone_map.name, "bone_map_file": resolved.bone_map.path, "bone_prefix": resolved.prefix,
                "camera": cameras[0] if len(cameras) == 1 else cameras,
                "render_resolution": [render.resolution_x, render.resolution_y, render.resolution_percentage],
                "pixel_aspect": [render.pixel_aspect_x, render.pixel_aspect_y],
                "blender": bpy.app.version_string},
    )
    track_path = write_track(track, out / TRACK_NAME)
    if len(empty_frames) == len(frames):
        raise NothingInView(
            f"No keypoint of '{armature.name}' is in the view of camera '{cameras[0]}' in frames {frames[0]}-{frames[-1]} "
            "(all behind the camera or outside its frame).",
            "Look through the camera (Numpad 0) and frame the character, or check the frame range.",
        )
    if empty_frames:
        notes.append(f"Nothing of the rig is in view in {len(empty_frames)} of {len(frames)} frames "
                     f"(first: {empty_frames[0]}); those maps are black.")
    unmapped_counts = [c if BODY_NAMES[i] not in resolved.unmapped else 0 for i, c in enumerate(out_of_view)]
    return ExportResult(
        map_paths=paths, track_path=track_path, bone_map_name=resolved.bone_map.name,
        missing_keypoints=_missing_report(resolved, unmapped_counts, len(frames)), track=track,
        prefix=resolved.prefix, missing_bones=resolved.missing_bones, notes=notes, timings=timings,
    )
