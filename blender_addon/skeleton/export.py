"""export_shot: an armature's animation -> the keypoint track (JSON), and skeleton maps (PNG) on request (bpy).

    request = ExportRequest(scene, armature, "/tmp/poses", frame_start=1, frame_end=48, width=512, height=768)
    result = export_shot(request)      # writes /tmp/poses/keypoints.json

The track is the job's input: the engine draws the maps itself. Maps are drawn here only with
`write_maps=True` (for other tools, or the add-on's skeleton preview strip).

The steps, in the order `export_shot` runs them:
1. check the request (armature, frame range, size, camera) and bind the bone map to the armature;
2. evaluate every frame and project the mapped bone points through the camera (project.py); the
   user's frame and subframe are restored afterwards, also on error;
3. make the track; with `rescale=RescaleTo(...)` rescale it to a reference character
   (rescale.py, docs/pose_rescaling.md), keeping the rig's own track as keypoints_driving.json and
   the reference keypoints as keypoints_reference.json;
4. write out_dir/keypoints.json; with write_maps, draw out_dir/pose_00001.png ... from it.
Every bad input raises a PoseExportError with a message and a hint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from . import bone_maps
from ..contract import draw
from .errors import BadFrameRange, BadSize, BadTrack, NoArmature, NothingInView
from .project import KeypointProjector, check_camera
from .rescale import NECK
from .track import MAP_NAME, TRACK_NAME, KeypointTrack, draw_track, prepare_output, rescale_track, write_track

BODY_NAMES = draw.BODY_NAMES

DRIVING_TRACK_NAME = "keypoints_driving.json"      # with rescaling: the rig's own track, before rescaling
REFERENCE_TRACK_NAME = "keypoints_reference.json"  # with rescaling: the reference keypoints it was rescaled to


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
class ExportRequest:
    """One pose export: which rig, which frames, at what size, into which folder.

    bone_map: None/"" = detect; a bundled map name ("rigify", "mixamo", "bundled"); or a .json path.
    hands/face: also project hands and face points where the map and rig have them.
    camera: project through this camera instead of the scene's (per-frame) active camera.
    fps: the track's frame rate (None = the scene's).
    rescale: rescale the poses to a reference character (RescaleTo).
    write_maps: also draw the skeleton maps as PNGs (the job needs only the track).
    hide_turned_away: face points on a head turned away from the camera are missing (project.py).
    """

    scene: object
    armature: object
    out_dir: str | Path
    frame_start: int
    frame_end: int
    width: int
    height: int
    bone_map: str | None = None
    hands: bool = False
    face: bool = False
    camera: object = None
    fps: float | None = None
    rescale: RescaleTo | None = None
    write_maps: bool = False
    hide_turned_away: bool = True

    @property
    def frames(self) -> list[int]:
        return list(range(int(self.frame_start), int(self.frame_end) + 1))

    @property
    def size(self) -> tuple[int, int]:
        return int(self.width), int(self.height)


@dataclass
class ExportResult:
    map_paths: list[Path]                 # empty unless the request asked for maps
    track_path: Path
    bone_map_name: str
    missing_keypoints: list[str]          # e.g. "left_ear (no bone)", "right_wrist (out of view in 3 of 48 frames)"
    track: KeypointTrack
    prefix: str = ""
    missing_bones: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, summed over frames


def export_shot(request: ExportRequest, progress=None) -> ExportResult:
    """Write request.out_dir/keypoints.json (and the maps with write_maps); see the module's steps.

    progress: called as progress(done, total) after each frame projected and each map drawn.
    """
    _check_request(request)
    resolved = resolve_for_armature(request.armature, request.bone_map)
    projector = KeypointProjector(request.armature, resolved, hands=request.hands, face=request.face,
                                  hide_turned_away=request.hide_turned_away)
    notes = _binding_notes(request, resolved, projector)
    out = prepare_output(request.out_dir)
    timings = {"evaluate": 0.0, "project": 0.0, "write_track": 0.0, "draw": 0.0, "write_png": 0.0}
    steps = _Steps(progress, len(request.frames) * (2 if request.write_maps else 1))

    projection = project_frames(request, projector, request.frames, timings, steps.advance)
    notes += _check_in_view(request, projection)
    track = _make_track(request, resolved, projection)
    if request.rescale is not None:
        track, note = _rescale(request, projector, resolved, track, projection, out, timings)
        notes.append(note)
    track_path = _write_tracks(track, out, rescaled=request.rescale is not None, timings=timings)
    map_paths = _write_maps(track, out, timings, steps.advance) if request.write_maps else []
    _remove_stale_maps(out, keep=len(map_paths))

    return ExportResult(
        map_paths=map_paths, track_path=track_path, bone_map_name=resolved.bone_map.name,
        missing_keypoints=_missing_report(resolved, projection, len(request.frames)), track=track,
        prefix=resolved.prefix, missing_bones=resolved.missing_bones, notes=notes, timings=timings,
    )


# -- 1. checks and the bone map ----------------------------------------------------------------------
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


def _check_request(request: ExportRequest) -> None:
    scene, armature = request.scene, request.armature
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
    if int(request.frame_end) < int(request.frame_start):
        raise BadFrameRange(f"The frame range {request.frame_start}-{request.frame_end} is empty.",
                            "Set an end frame at or after the start frame.")
    if int(request.width) <= 0 or int(request.height) <= 0:
        raise BadSize(f"The map size {request.width}x{request.height} is not a positive size.", "Use the render resolution, e.g. 512x768.")
    check_camera(scene, request.camera)


def _binding_notes(request: ExportRequest, resolved, projector: KeypointProjector) -> list[str]:
    notes = []
    name = resolved.bone_map.name
    if request.hands and not projector.hands:
        notes.append(f"Hands not drawn: the bone map '{name}' finds no finger bones on this rig.")
    if request.face and not projector.face:
        notes.append(f"Face not drawn: the bone map '{name}' has no face points for this rig.")
    if request.hide_turned_away and projector.facing is None:
        notes.append(f"Face points are not hidden when the head turns away: the bone map '{name}' names no head bone "
                     "(or too few face points to tell where the head faces).")
    return notes


class _Steps:
    """progress(done, total) over the export's steps (frames projected, then maps drawn)."""

    def __init__(self, progress, total: int):
        self.progress, self.total, self.done = progress, total, 0

    def advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


# -- 2. evaluate and project --------------------------------------------------------------------------
@dataclass
class Projection:
    keypoints: list            # FrameKeypoints per frame
    cameras: list              # camera objects, in the order the frames first used them
    out_of_view: list[int]     # per body keypoint: frames where it is behind the camera or outside the frame
    turned_away: list[int]     # per body keypoint: frames where the head hides it
    empty_frames: list[int]    # frames where no body keypoint is in view


def project_frames(request: ExportRequest, projector: KeypointProjector, frames: list[int], timings: dict, after_frame=None) -> Projection:
    """Evaluate (`scene.frame_set`, once per frame) and project every frame; the user's frame and
    subframe are restored afterwards, also on error. after_frame() runs after each frame.

    frame_set is the evaluation floor: setting `scene.frame_current` and updating only the view
    layer's depsgraph evaluates the same animation, drivers and constraints, gave identical
    keypoints and measured 0.88-1.05x of frame_set's time on a Rigify rig across runs
    (benchmarks/pose_export_bench.py measures both): no reliable gain, and it would skip the
    frame-change handlers and camera markers frame_set runs."""
    scene, (width, height) = request.scene, request.size
    result = Projection([], [], [0] * len(BODY_NAMES), [0] * len(BODY_NAMES), [])
    user_frame, user_subframe = scene.frame_current, scene.frame_subframe
    try:
        for f in frames:
            t0 = time.perf_counter()
            scene.frame_set(f)
            t1 = time.perf_counter()
            cam = check_camera(scene, request.camera)  # markers may switch the active camera per frame
            if cam not in result.cameras:
                result.cameras.append(cam)
            fk, away = projector.frame_keypoints(f, scene, cam, width, height)
            result.keypoints.append(fk)
            seen = fk.body[:, 2] > 0
            if not seen.all():
                for i in np.flatnonzero(~seen):
                    counts = result.turned_away if away[i] else result.out_of_view
                    counts[i] += 1
                if not seen.any():
                    result.empty_frames.append(f)
            timings["evaluate"] += t1 - t0
            timings["project"] += time.perf_counter() - t1
            if after_frame is not None:
                after_frame()
    finally:
        scene.frame_set(user_frame, subframe=user_subframe)
    return result


def _check_in_view(request: ExportRequest, projection: Projection) -> list[str]:
    """Raise when nothing is in view in any frame; a note when some frames are empty."""
    frames, empty = request.frames, projection.empty_frames
    if len(empty) == len(frames):
        raise NothingInView(
            f"No keypoint of '{request.armature.name}' is in the view of camera '{projection.cameras[0].name}' in frames "
            f"{frames[0]}-{frames[-1]} (all behind the camera or outside its frame).",
            "Look through the camera (Numpad 0) and frame the character, or check the frame range.",
        )
    if empty:
        return [f"Nothing of the rig is in view in {len(empty)} of {len(frames)} frames (first: {empty[0]}); "
                "those frames' maps are black."]
    return []


def _missing_report(resolved, projection: Projection, total: int) -> list[str]:
    report = [f"{name} (no bone)" for name in resolved.unmapped]
    for i, name in enumerate(BODY_NAMES):
        if name in resolved.unmapped:
            continue
        if projection.out_of_view[i]:
            report.append(f"{name} (out of view in {projection.out_of_view[i]} of {total} frames)")
        if projection.turned_away[i]:
            report.append(f"{name} (turned away from the camera in {projection.turned_away[i]} of {total} frames)")
    return report


# -- 3. the track, rescaled on request ----------------------------------------------------------------
def _make_track(request: ExportRequest, resolved, projection: Projection) -> KeypointTrack:
    scene, render = request.scene, request.scene.render
    names = [c.name for c in projection.cameras]
    fps = float(request.fps) if request.fps else round(render.fps / (render.fps_base or 1.0), 3)
    return KeypointTrack(
        width=int(request.width), height=int(request.height), fps=fps, frames=projection.keypoints,
        source={"blend_file": bpy.data.filepath, "scene": scene.name, "armature": request.armature.name,
                "bone_map": resolved.bone_map.name, "bone_map_file": resolved.bone_map.path, "bone_prefix": resolved.prefix,
                "camera": names[0] if len(names) == 1 else names,
                "render_resolution": [render.resolution_x, render.resolution_y, render.resolution_percentage],
                "pixel_aspect": [render.pixel_aspect_x, render.pixel_aspect_y],
                "blender": bpy.app.version_string},
    )


def _rescale(request: ExportRequest, projector, resolved, driving: KeypointTrack, projection: Projection, out: Path,
             timings: dict) -> tuple[KeypointTrack, str]:
    """(the driving track rescaled to the reference, a note); writes the driving and reference tracks."""
    rescale = request.rescale
    # The reference pose is seen through the shot's camera (the one at the reference frame when markers switch cameras).
    cameras = projection.cameras
    camera = request.camera if request.camera is not None else (cameras[0] if len(cameras) == 1 else None)
    reference = _reference_track(request, projector, resolved, camera, timings)
    write_track(driving, out / DRIVING_TRACK_NAME)
    write_track(reference, out / REFERENCE_TRACK_NAME)
    track = _rescaled(driving, reference, rescale.align_frame, request.armature.name)
    what = (f"the keypoints in {reference.source.get('file') or 'the given track'}" if rescale.reference_track is not None
            else f"the rig's pose at frame {rescale.reference_frame}")
    align = driving.frame_start if rescale.align_frame is None else rescale.align_frame
    return track, (f"Poses rescaled to the reference ({what}), aligned at frame {align}; "
                   f"the rig's own track is {DRIVING_TRACK_NAME}.")


def _reference_track(request: ExportRequest, projector, resolved, camera, timings) -> KeypointTrack:
    """The reference keypoints: the given track, or the armature projected at rescale.reference_frame.
    Raises when the reference has no neck (the root the rescaled skeleton hangs from)."""
    rescale = request.rescale
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
    at_frame = ExportRequest(request.scene, request.armature, request.out_dir, frame, frame, request.width, request.height,
                             camera=camera, fps=request.fps)
    projection = project_frames(at_frame, projector, [frame], timings)
    if not projection.keypoints[0].body[NECK, 2] > 0:
        raise NothingInView(
            f"At the reference pose frame {frame}, the body of '{request.armature.name}' is not in the view of camera "
            f"'{projection.cameras[0].name}' (no neck keypoint), so there is nothing to rescale to.",
            f"Pose the rig like the reference character at frame {frame} in view of the camera (Numpad 0), "
            "or change 'Reference Pose Frame'.",
        )
    return _make_track(at_frame, resolved, projection)


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


# -- 4. files -----------------------------------------------------------------------------------------
def _write_tracks(track: KeypointTrack, out: Path, rescaled: bool, timings: dict) -> Path:
    """Write out/keypoints.json; without rescaling, delete the extra tracks an earlier rescaled
    export left (they would describe other poses)."""
    t0 = time.perf_counter()
    path = write_track(track, out / TRACK_NAME)
    if not rescaled:
        for name in (DRIVING_TRACK_NAME, REFERENCE_TRACK_NAME):
            (out / name).unlink(missing_ok=True)
    timings["write_track"] += time.perf_counter() - t0
    return path


def _write_maps(track: KeypointTrack, out: Path, timings: dict, after_map=None) -> list[Path]:
    """Draw the track into out/pose_00001.png ... (the maps the engine would draw from it)."""
    return draw_track(track, out, timings=timings, after_map=after_map)


def _remove_stale_maps(out: Path, keep: int) -> None:
    """Delete pose_NNNNN.png beyond the first `keep` (left by an earlier, longer export or one
    with maps), so the folder holds one shot."""
    for path in out.glob("pose_*.png"):
        stem = path.stem[len("pose_"):]
        if stem.isdigit() and int(stem) > keep:
            path.unlink(missing_ok=True)


__all__ = ["ExportRequest", "ExportResult", "RescaleTo", "export_shot", "resolve_for_armature", "detect_bone_map",
           "project_frames", "MAP_NAME", "TRACK_NAME"]
