"""From the scene and its shot settings to a job: checks, skeleton maps, the `job` message.

Data flows one way: scene + settings -> ShotPlan (checked) -> skeleton maps on disk -> job dict.
Every check raises an AddonError naming what is wrong and what to do.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bpy

from . import contract
from .errors import AddonError, FrameRangeError, NoArmature, NoCamera, OutputFolderError, ReferenceImageError

if TYPE_CHECKING:
    from .skeleton.export import RescaleTo

DEFAULT_OUTPUT = "//aa_renders/"


@dataclass
class ShotPlan:
    """Everything one render needs, resolved to absolute paths and plain numbers."""

    scene_name: str
    shot_name: str
    armature_name: str
    frame_start: int
    frame_end: int
    width: int
    height: int
    reference: Path
    shot_dir: Path
    # The job's generation settings, checked by the contract (aa_contract/settings.py); width and
    # height None = the model's native size (the engine fills them in; `width`/`height` above are
    # then only the keypoints' pixel grid, which the engine scales).
    settings: dict = field(default_factory=contract.settings.defaults)
    rescale: RescaleTo | None = None   # pose rescaling to the reference character (docs/pose_rescaling.md)
    camera_name: str = ""   # a shot of the shot list seen through its own camera; "" = the scene camera per frame
    notes: list[str] = field(default_factory=list)
    keypoints_path: str = ""   # the exported keypoint track: the job's pose input (the engine draws the maps)
    pose_paths: list[str] = field(default_factory=list)   # skeleton maps, only when asked for (preview strip, other tools)

    @property
    def frame_count(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def poses_dir(self) -> Path:
        return self.shot_dir / "poses"

    @property
    def frames_dir(self) -> Path:
        return self.shot_dir / "frames"

    @property
    def strip_name(self) -> str:
        return f"AA {self.shot_name}"

    def job(self, video: bool = True) -> dict:
        """The protocol's `job` message (docs/protocol.md): the poses as the keypoint track, or as
        skeleton maps for a plan that has only those."""
        if self.keypoints_path:
            poses = {"keypoints": str(self.keypoints_path)}
        elif self.pose_paths:
            poses = {"poses": list(self.pose_paths)}
        else:
            raise AddonError("The poses have not been exported yet.", "This is a bug: export the poses before sending the job.")
        settings = {k: v for k, v in self.settings.items() if v is not None}
        return {
            "type": "job", "id": f"{self.shot_name}-{time.time_ns() // 1_000_000}",
            "reference": str(self.reference), **poses, "output": str(self.frames_dir),
            **settings, "video": video,
        }

    @property
    def fps(self) -> float:
        return self.settings["fps"]


# -- the checks -----------------------------------------------------------------------------------
def round_to_8(value: float) -> int:
    return max(8, int(value / 8.0 + 0.5) * 8)  # halves round up (500 -> 504)


def shot_resolution(scene, settings) -> tuple[int, int, str]:
    """(width, height, note): the pose export's size. The render resolution rounded to multiples
    of 8 (for the model's native size too: the engine scales the keypoints to it), or the custom
    size, checked by the contract."""
    if settings.size_source != 'CUSTOM':
        r = scene.render
        raw_w = r.resolution_x * r.resolution_percentage / 100.0
        raw_h = r.resolution_y * r.resolution_percentage / 100.0
        w, h = round_to_8(raw_w), round_to_8(raw_h)
        note = ""
        if (w, h) != (int(raw_w), int(raw_h)):
            note = f"Render size {int(raw_w)}x{int(raw_h)} rounded to {w}x{h} (multiples of 8)."
        return w, h, note
    checked = contract.settings.validate({"width": settings.width, "height": settings.height}, fill_defaults=False)
    return checked["width"], checked["height"], ""


def shot_settings(scene, settings, width: int, height: int) -> dict:
    """The job's generation settings from the shot's properties (one per contract setting the
    add-on shows), the scene's frame rate and the size mode; checked by the contract."""
    values = {s.name: getattr(settings, s.name) for s in contract.settings.SETTINGS if s.addon_property}
    values["fps"] = round(scene.render.fps / (scene.render.fps_base or 1.0), 3)
    values["width"], values["height"] = (None, None) if settings.size_source == 'NATIVE' else (width, height)
    return contract.settings.validate(values)


def shot_armature(scene, settings, context=None):
    if settings.armature is not None:
        if settings.armature.name not in scene.objects:
            raise NoArmature(f"The armature '{settings.armature.name}' is not in scene '{scene.name}'.", "Pick an armature of this scene in 'Armature'.")
        return settings.armature
    active = getattr(context, "active_object", None) if context is not None else None
    if active is not None and active.type == 'ARMATURE' and active.name in scene.objects:
        return active
    armatures = [o for o in scene.objects if o.type == 'ARMATURE']
    if len(armatures) == 1:
        return armatures[0]
    if not armatures:
        raise NoArmature(f"Scene '{scene.name}' has no armature to follow.", "Add a rig (Rigify, Mixamo or the bundled one) and pick it in 'Armature'.")
    names = ", ".join(sorted(o.name for o in armatures))
    raise NoArmature(f"Scene '{scene.name}' has several armatures ({names}) and none is chosen.", "Pick one in 'Armature', or make it the active object.")


def shot_reference(scene, settings, shot_dir: Path) -> Path:
    if settings.reference_source == 'IMAGE':
        image = settings.reference_image
        if image is None:
            raise ReferenceImageError("No reference image is chosen.", "Pick an image datablock in 'Reference Image', or switch to 'File'.")
        path = Path(bpy.path.abspath(image.filepath, library=image.library)) if image.filepath else None
        if path is not None and path.is_file() and not image.packed_file and not image.is_dirty:
            _check_readable(path)
            return path
        if not image.has_data and tuple(image.size) == (0, 0):
            raise ReferenceImageError(f"The reference image '{image.name}' has no pixels Blender can read.", "Reload it (Image > Reload) or pick a PNG/JPG file.")
        copy = shot_dir / "reference.png"
        try:
            image.save_render(str(copy), scene=scene)
        except RuntimeError as exc:
            raise ReferenceImageError(f"The reference image '{image.name}' could not be saved for the engine ({exc}).", "Pick a PNG/JPG file instead.") from exc
        return copy
    if not settings.reference_path:
        raise ReferenceImageError("No reference image is set.", "Choose a PNG or JPG of the character (full body, plain background works best).")
    path = Path(bpy.path.abspath(settings.reference_path))
    if not path.is_file():
        raise ReferenceImageError(f"The reference image {path} does not exist.", "Choose an existing PNG or JPG file in 'Reference Image'.")
    _check_readable(path)
    return path


def _check_readable(path: Path) -> None:
    try:
        image = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as exc:
        raise ReferenceImageError(f"The reference image {path} cannot be read: {str(exc).strip()}.", "Save it again as PNG or JPG.") from exc
    try:
        readable = image.size[0] > 0 and image.size[1] > 0
    finally:
        bpy.data.images.remove(image)
    if not readable:
        raise ReferenceImageError(f"The reference image {path} cannot be read (not an image Blender understands, or damaged).", "Save it again as PNG or JPG.")


def shot_folder(settings, shot_name: str) -> tuple[Path, str]:
    """The shot's folder, created and checked writable; plus a note when it had to fall back."""
    base = settings.output_dir or DEFAULT_OUTPUT
    note = ""
    if base.startswith("//") and not bpy.data.filepath:
        base = str(Path(tempfile.gettempdir()) / "animate_anyone")
        note = f"The .blend is not saved: output goes to {base}."
    shot_dir = Path(bpy.path.abspath(base)) / shot_name
    probe = shot_dir / ".write_test"
    try:
        shot_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(
            f"The output folder {shot_dir} is not writable ({exc.strerror or exc}).",
            "Pick another folder in 'Output' (// = next to the .blend), or fix its permissions.",
        ) from exc
    return shot_dir, note


def reference_keypoints(path_setting: str):
    """The reference character's keypoint track from the 'Keypoints File' setting; raises BadTrack."""
    from .skeleton.errors import BadTrack
    from .skeleton.track import read_track

    hint = "Pick an aa-keypoints/1 track (docs/keypoints.md) in 'Keypoints File', or switch 'Reference Pose' to 'Rig Pose at a Frame'."
    if not path_setting:
        raise BadTrack("Rescaling to a keypoints file, but no keypoints file is set.", hint)
    path = Path(bpy.path.abspath(path_setting))
    if not path.is_file():
        raise BadTrack(f"The reference keypoints file {path} does not exist." if not path.exists() else
                       f"The reference keypoints file {path} is not a file.", hint)
    track = read_track(path)  # its own BadTrack names the faulty field
    track.source.setdefault("file", str(path))
    return track


def shot_rescale(settings) -> RescaleTo | None:
    """The shot's pose rescaling, with the keypoints file read and checked; None when it is off."""
    if not settings.rescale:
        return None
    from .skeleton.export import RescaleTo

    align = None if settings.align_first_frame else settings.align_frame
    if settings.rescale_source == 'FILE':
        return RescaleTo(reference_track=reference_keypoints(settings.reference_keypoints), align_frame=align)
    return RescaleTo(reference_frame=settings.reference_pose_frame, align_frame=align)


def plan_shot(scene, context=None, settings=None) -> ShotPlan:
    """Check the scene and settings; returns a ShotPlan (nothing exported yet)."""
    settings = settings or scene.animate_anyone
    camera = getattr(settings, "camera", None)  # a shot of the shot list may name its camera
    if camera is not None and camera.name not in scene.objects:
        raise NoCamera(f"The shot's camera '{camera.name}' is not in scene '{scene.name}'.", "Pick a camera of this scene in the shot's 'Camera'.")
    if scene.camera is None and camera is None:
        raise NoCamera(
            f"Scene '{scene.name}' has no active camera.",
            "The skeleton maps show the rig as the camera sees it: add a camera and set it as the scene camera (Scene properties > Camera).",
        )
    armature = shot_armature(scene, settings, context)
    start, end = (scene.frame_start, scene.frame_end) if settings.use_scene_range else (settings.frame_start, settings.frame_end)
    if end < start:
        raise FrameRangeError(f"The frame range {start}-{end} is empty.", "Set an end frame at or after the start frame.")
    width, height, res_note = shot_resolution(scene, settings)
    shot_name = bpy.path.clean_name(settings.shot_name or scene.name)
    shot_dir, out_note = shot_folder(settings, shot_name)
    reference = shot_reference(scene, settings, shot_dir)
    rescale = shot_rescale(settings)
    return ShotPlan(
        scene_name=scene.name, shot_name=shot_name, armature_name=armature.name, frame_start=start, frame_end=end,
        width=width, height=height, reference=reference, shot_dir=shot_dir,
        settings=shot_settings(scene, settings, width, height), rescale=rescale,
        notes=[n for n in (res_note, out_note) if n], camera_name=camera.name if camera is not None else "",
    )


def export_poses(scene, plan: ShotPlan, settings=None, progress=None) -> list[str]:
    """Write the keypoint track (the job's input) into plan.poses_dir, rescaled to the reference
    character when plan.rescale says so; the skeleton maps too when the scene asks for them
    ('Write Skeleton Maps', or the 'Skeleton Preview Strip' that shows them). Fills
    plan.keypoints_path and plan.pose_paths (the maps; empty without them); returns the maps."""
    from .skeleton import export as skeleton_export

    settings = settings or scene.animate_anyone
    scene_settings = scene.animate_anyone
    request = skeleton_export.ExportRequest(
        scene, scene.objects[plan.armature_name], str(plan.poses_dir), plan.frame_start, plan.frame_end, plan.width, plan.height,
        bone_map=settings.bone_map or None, hands=settings.hands, face=settings.face, rescale=plan.rescale,
        camera=scene.objects[plan.camera_name] if plan.camera_name else None,
        write_maps=scene_settings.write_skeleton_maps or scene_settings.import_pose_preview,
    )
    result = skeleton_export.export_shot(request, progress=progress)
    plan.keypoints_path = str(result.track_path)
    plan.pose_paths = [str(p) for p in result.map_paths]
    plan.notes.extend(getattr(result, "notes", []))
    missing = getattr(result, "missing_keypoints", None)
    if missing:
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        plan.notes.append(f"Bone map '{result.bone_map_name}'; not drawn: {', '.join(map(str, missing[:6]))}{more}.")
    return plan.pose_paths
