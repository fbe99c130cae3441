"""export_shot: an armature's animation -> skeleton maps (PNG) + keypoint track (JSON) (bpy).

For each frame of the range: `scene.frame_set` once, project the mapped bone points through the
scene camera (project.py), draw the map (draw.py), write out_dir/pose_00001.png ... (1-based, in
frame order), then the track out_dir/keypoints.json. The user's frame (and subframe) is restored
afterwards, also on error. Every bad input raises a PoseExportError with a message and a hint.

With `rescale=RescaleTo(...)` the track is first rescaled to a reference character's proportions
(rescale.py, docs/pose_rescaling.md) and the maps are drawn from the rescaled track; the rig's own
track is kept as keypoints_driving.json and the reference keypoints as keypoints_reference.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import bone_maps
from ..contract import draw, png
from .errors import BadFrameRange, BadSize, BadTrack, NoArmature, NothingInView
from .project import KeypointProjector, check_camera
from .rescale import NECK
from .track import MAP_NAME, TRACK_NAME, FrameKeypoints, KeypointTrack, prepare_output, rescale_track, write_track

BODY_NAMES = draw.BODY_NAMES

DRIVING_TRACK_NAME = "keypoints_driving.json"      # with rescaling: the rig's own track, before rescaling
REFERENCE_TRACK_NAME = "keypoints_reference.json"  # with rescaling: the reference keypoints it was rescaled to


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


@dataclass
class RescaleTo:
    """Rescale the exported poses to the reference character's proportions (docs/pose_rescaling.md).

    The reference is either this armature posed like the reference character at scene frame
    `reference_frame` (projected like the shot: same camera, same size), or `reference_track`,
    keypoints made elsewhere (its first frame is used). `align_frame`: the shot's scene frame posed
    most like the reference, where the rig's limbs are measured (None = the shot's first frame).
    """

    reference_frame: int | None = None
    reference_track: KeypointTrack | None = None
    align_frame: int | None = None

    def __post_init__(self):
        if (self.reference_frame is None) == (self.reference_track is None):
            raise ValueError("RescaleTo takes either reference_frame or reference_track")


@dataclass
class _Projection:
    keypoints: list[FrameKeypoints]
    cameras: list            # camera objects, in the order the frames first used them
    out_of_view: list[int]   # per body keypoint: frames where it is missing
    empty_frames: list[int]  # frames where no body keypoint is in view


def _project_frames(scene, projector, frames, width, height, camera, timings, after_frame=None) -> _Projection:
    """Evaluate (`scene.frame_set`, once per frame) and project every frame; the user's frame and
    subframe are restored afterwards, also on error. after_frame(n, keypoints) runs after frame n."""
    result = _Projection([], [], [0] * len(BODY_NAMES), [])
    user_frame, user_subframe = scene.frame_current, scene.frame_subframe
    try:
        for n, f in enumerate(frames):
            t0 = time.perf_counter()
            scene.frame_set(f)
            t1 = time.perf_counter()
            cam = check_camera(scene, camera)  # markers may switch the active camera per frame
            if cam not in result.cameras:
                result.cameras.append(cam)
            fk = projector.frame_keypoints(f, scene, cam, width, height)
            result.keypoints.append(fk)
            for i in range(len(BODY_NAMES)):
                if not fk.body[i, 2] > 0:
                    result.out_of_view[i] += 1
            if not (fk.body[:, 2] > 0).any():
                result.empty_frames.append(f)
            timings["evaluate"] += t1 - t0
            timings["project"] += time.perf_counter() - t1
            if after_frame is not None:
                after_frame(n, fk)
    finally:
        scene.frame_set(user_frame, subframe=user_subframe)
    return result


def _make_track(scene, armature, resolved, projection: _Projection, width, height, fps) -> KeypointTrack:
    render = scene.render
    names = [c.name for c in projection.cameras]
    return KeypointTrack(
        width=width, height=height, fps=float(fps) if fps else round(render.fps / (render.fps_base or 1.0), 3), frames=projection.keypoints,
        source={"blend_file": bpy.data.filepath, "scene": scene.name, "armature": armature.name,
                "bone_map": resolved.bone_map.name, "bone_map_file": resolved.bone_map.path, "bone_prefix": resolved.prefix,
                "camera": names[0] if len(names) == 1 else names,
                "render_resolution": [render.resolution_x, render.resolution_y, render.resolution_percentage],
                "pixel_aspect": [render.pixel_aspect_x, render.pixel_aspect_y],
                "blender": bpy.app.version_string},
    )


def _write_map(out: Path, n: int, keypoints: FrameKeypoints, width: int, height: int, timings) -> Path:
    """Draw one frame's map and write it as out/pose_{n+1:05d}.png."""
    t0 = time.perf_counter()
    image = draw.draw_keypoints(width, height, keypoints)
    t1 = time.perf_counter()
    path = out / MAP_NAME.format(n + 1)
    png.write_png(path, image)
    timings["draw"] += t1 - t0
    timings["write_png"] += time.perf_counter() - t1
    return path


def _reference_track(scene, armature, projector, resolved, rescale: RescaleTo, camera, width, height, fps, timings) -> KeypointTrack:
    """The reference keypoints: the given track, or the armature projected at rescale.reference_frame.
    Raises when the reference has no neck (the root the rescaled skeleton hangs from)."""
    if rescale.reference_track is not None:
        reference = rescale.reference_track
        if not reference.frames[0].body[NECK, 2] > 0:
            where = f" in {reference.source['file']}" if reference.source.get("file") else ""
            raise BadTrack(
                f"The reference keypoints{where} have no neck in their first frame, "
                "so there is nothing to hang the rescaled skeleton on.",
                "Use a track whose first frame shows the reference character's shoulders (docs/keypoints.md), or rescale to the rig's pose at a frame.",
            )
        return reference
    frame = int(rescale.reference_frame)
    projection = _project_frames(scene, projector, [frame], width, height, camera, timings)
    if not projection.keypoints[0].body[NECK, 2] > 0:
        raise NothingInView(
            f"At the reference pose frame {frame}, the body of '{armature.name}' is not in the view of camera "
            f"'{projection.cameras[0].name}' (no neck keypoint), so there is nothing to rescale to.",
            f"Pose the rig like the reference character at frame {frame} in view of the camera (Numpad 0), "
            "or change 'Reference Pose Frame'.",
        )
    return _make_track(scene, armature, resolved, projection, width, height, fps)


def _rescaled(driving: KeypointTrack, reference: KeypointTrack, align_frame: int | None, armature_name: str) -> KeypointTrack:
    """The driving track rescaled to the reference, after checking the alignment frame."""
    frames = [f.frame for f in driving.frames]
    align = frames[0] if align_frame is None else int(align_frame)
    if align not in frames:
        raise BadFrameRange(f"The alignment frame {align} is outside the shot's frames {frames[0]}-{frames[-1]}.",
                            "Pick the frame of the shot posed most like the reference image (default: the first).")
    index = frames.index(align)
    if not driving.frames[index].body[NECK, 2] > 0:
        raise NothingInView(
            f"At the alignment frame {align}, the neck of '{armature_name}' is not in the camera's view, so the rig's "
            "proportions cannot be measured there.",
            "Pick an alignment frame where the rig's body is in view.",
        )
    return rescale_track(driving, reference, reference_frame=0, align_frame=index)


def export_shot(scene, armature, out_dir: str, frame_start: int, frame_end: int, width: int, height: int,
                bone_map=None, hands: bool = False, face: bool = False, progress=None, *,
                camera=None, fps: float | None = None, write_maps: bool = True, rescale: RescaleTo | None = None) -> ExportResult:
    """Write out_dir/pose_00001.png ... and out_dir/keypoints.json for frames frame_start..frame_end.

    bone_map: None/"" = detect; a bundled map name ("rigify", "mixamo", "bundled"); or a .json path.
    hands/face: also project and draw them where the map and rig have them.
    progress: called as progress(done, total) after each frame.
    camera: project through this camera instead of the scene's (per-frame) active camera.
    write_maps: False writes only the track (maps can be drawn later from it).
    rescale: rescale the poses to a reference character (RescaleTo): keypoints.json and the maps
    are then the rescaled poses; keypoints_driving.json keeps the rig's own track and
    keypoints_reference.json the reference keypoints used.
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
    paths = []
    # Rescaled maps need the whole track first (the alignment frame may come later in the shot).
    draw_while_projecting = write_maps and rescale is None

    def after_frame(n, fk):
        if draw_while_projecting:
            paths.append(_write_map(out, n, fk, width, height, timings))
        if progress is not None and (draw_while_projecting or not write_maps):
            progress(n + 1, len(frames))

    projection = _project_frames(scene, projector, frames, width, height, camera, timings, after_frame)
    if draw_while_projecting:
        _remove_stale_maps(out, len(paths))
    track = _make_track(scene, armature, resolved, projection, width, height, fps)
    if rescale is None:
        track_path = write_track(track, out / TRACK_NAME)
        for name in (DRIVING_TRACK_NAME, REFERENCE_TRACK_NAME):  # from an earlier rescaled export: no longer true
            (out / name).unlink(missing_ok=True)
    else:
        track_path = write_track(track, out / DRIVING_TRACK_NAME)
    cameras = projection.cameras
    if len(projection.empty_frames) == len(frames):
        raise NothingInView(
            f"No keypoint of '{armature.name}' is in the view of camera '{cameras[0].name}' in frames {frames[0]}-{frames[-1]} "
            "(all behind the camera or outside its frame).",
            "Look through the camera (Numpad 0) and frame the character, or check the frame range.",
        )
    empty_frames = projection.empty_frames
    if empty_frames:
        notes.append(f"Nothing of the rig is in view in {len(empty_frames)} of {len(frames)} frames "
                     f"(first: {empty_frames[0]}); those maps are black.")
    if rescale is not None:
        # The reference pose is seen through the shot's camera (the one at the reference frame when markers switch cameras).
        reference_camera = camera if camera is not None else (cameras[0] if len(cameras) == 1 else None)
        reference = _reference_track(scene, armature, projector, resolved, rescale, reference_camera, width, height, fps, timings)
        write_track(reference, out / REFERENCE_TRACK_NAME)
        driving = track
        track = _rescaled(driving, reference, rescale.align_frame, armature.name)
        track_path = write_track(track, out / TRACK_NAME)
        what = (f"the keypoints in {reference.source.get('file') or 'the given track'}" if rescale.reference_track is not None
                else f"the rig's pose at frame {rescale.reference_frame}")
        align = driving.frame_start if rescale.align_frame is None else rescale.align_frame
        notes.append(f"Poses rescaled to the reference ({what}), aligned at frame {align}; "
                     f"the rig's own track is {DRIVING_TRACK_NAME}.")
        if write_maps:
            for n, fk in enumerate(track.frames):
                paths.append(_write_map(out, n, fk, width, height, timings))
                if progress is not None:
                    progress(n + 1, len(frames))
            _remove_stale_maps(out, len(paths))
    unmapped_counts = [c if BODY_NAMES[i] not in resolved.unmapped else 0 for i, c in enumerate(projection.out_of_view)]
    return ExportResult(
        map_paths=paths, track_path=track_path, bone_map_name=resolved.bone_map.name,
        missing_keypoints=_missing_report(resolved, unmapped_counts, len(frames)), track=track,
        prefix=resolved.prefix, missing_bones=resolved.missing_bones, notes=notes, timings=timings,
    )
