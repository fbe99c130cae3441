"""From an evaluated armature to 2D keypoints through the scene camera (bpy).

Per frame (after the caller has evaluated the scene at that frame): each mapped point (a bone's
head or tail plus an offset, a midpoint, or a mean of bone points) is taken from its pose bone's
matrix straight into camera space, then projected the way
`bpy_extras.object_utils.world_to_camera_view` does (tests check the two agree). Only the mapped
bones are read, with mathutils: a Rigify rig has 706 pose bones and the map needs about 20, so
reading them all (one `foreach_get`) cost more than the whole projection. Pixels are
(x * W, (1 - y) * H) at the map size: the camera frame (as the render resolution, pixel aspect,
sensor fit and shift define it) is stretched onto the W x H map, so a map size with the render's
aspect (the add-on rounds the render size to multiples of 8) reproduces the render's framing.

A point is missing (NaN, confidence 0) when it is unmapped, at or behind the camera's clip start
(world_to_camera_view returns plausible x, y for them), outside the frame, or a face point on a
head turned away from the camera (`HeadFacing`: a DWPose detector finds no nose or eyes on the
back of a head, and the released model was trained on such maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from mathutils import Vector

from .bone_maps import BODY_NAMES, FACE_POINTS, HAND_POINTS, ResolvedMap
from .errors import NoCamera
from .track import FrameKeypoints

N_BODY = len(BODY_NAMES)
NOSE, RIGHT_EYE, LEFT_EYE, RIGHT_EAR, LEFT_EAR = (BODY_NAMES.index(k) for k in ("nose", "right_eye", "left_eye", "right_ear", "left_ear"))
FACE_START = N_BODY + 2 * HAND_POINTS

# When a face point is hidden, as the angle between a direction of the head and the direction from
# the point to the camera (docs/keypoints.md, 'Hidden face points'):
# - the nose, the eyes and the 68 face points: the face (the head's forward) more than 100 degrees
#   from the camera, i.e. turned a little past profile (the tip of the nose still shows in profile);
# - an eye also when its side of the head is more than 150 degrees from the camera: the far eye
#   disappears behind the nose once the head has turned 60 degrees from the camera;
# - an ear when its side is more than 135 degrees from the camera: the far ear disappears behind
#   the head once it has turned 45 degrees from a front or a back view (before the far eye does);
#   both ears show from the front and from behind.
FACE_AWAY = math.cos(math.radians(100.0))
EYE_SIDE_AWAY = math.cos(math.radians(150.0))
EAR_SIDE_AWAY = math.cos(math.radians(135.0))


def check_camera(scene, camera=None):
    """The camera object to project through (the scene's active camera by default)."""
    camera = camera if camera is not None else scene.camera
    if camera is None:
        raise NoCamera(f"Scene '{scene.name}' has no active camera.",
                       "The skeleton maps show the rig as the camera sees it: add a camera and make it the scene camera.")
    if camera.type != 'CAMERA':
        raise NoCamera(f"The scene camera '{camera.name}' is a {camera.type.lower()} object, not a camera.",
                       "Make a camera object the scene camera (select it, View > Cameras > Set Active Object as Camera).")
    if camera.data.type == 'PANO':
        raise NoCamera(f"The camera '{camera.name}' is panoramic; skeleton maps need a perspective or orthographic camera.",
                       "Set the camera's Type to Perspective or Orthographic.")
    return camera


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is 0, without numpy's warnings (np.errstate costs more than the projection)."""
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b != 0)


def _view_coords(scene, camera, co: np.ndarray) -> np.ndarray:
    """Camera-space points (N, 3) (the camera looks along -Z) -> x, y in 0..1 from the frame's
    bottom-left and z = depth in front of the camera, as world_to_camera_view computes them."""
    top_right, bottom_right, bottom_left = camera.data.view_frame(scene=scene)[:3]
    z = -co[:, 2]
    min_x, max_x, min_y, max_y = bottom_left[0], top_right[0], bottom_right[1], top_right[1]
    if camera.data.type != 'ORTHO':
        s = z / -top_right[2]  # the frame corners scaled to depth z: v * z / -v.z (all corners share v.z)
        x = _divide(co[:, 0] - min_x * s, (max_x - min_x) * s)
        y = _divide(co[:, 1] - min_y * s, (max_y - min_y) * s)
    else:
        x = (co[:, 0] - min_x) / (max_x - min_x)
        y = (co[:, 1] - min_y) / (max_y - min_y)
    return np.stack([x, y, z], axis=1)


def camera_view_coords(scene, camera, world_points: np.ndarray) -> np.ndarray:
    """world_to_camera_view for many points: (N, 3) world -> (N, 3) x, y in 0..1 from the frame's
    bottom-left, z = depth in front of the camera."""
    inv = np.array(camera.matrix_world.normalized().inverted(), dtype=np.float64)
    return _view_coords(scene, camera, np.asarray(world_points, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3])


def _local_vector(pose_bone, point) -> Vector:
    """The point in its pose bone's local frame: a pose bone's tail is its matrix applied to
    (0, rest length, 0); offsets are in that frame too (offset_lengths in rest lengths)."""
    length = pose_bone.bone.length
    v = Vector(point.offset) + Vector(point.offset_lengths) * length
    if point.at == "tail":
        v.y += length
    return v


@dataclass
class HeadFacing:
    """The head's forward and left directions in the head bone's local frame, found in the rest
    pose from the map's own face points (forward: from the middle of the ears, or eyes, to the
    nose; left: from the right ear, or eye, to the left one), so no rig convention is assumed."""

    pose_bone: object
    forward: Vector
    left: Vector | None

    @classmethod
    def from_rest_pose(cls, armature, resolved: ResolvedMap) -> "HeadFacing | None":
        if resolved.head_bone is None:
            return None
        rest = _rest_points(armature, resolved)

        def mid(a, b):
            return (rest[a] + rest[b]) * 0.5 if rest[a] is not None and rest[b] is not None else None

        ears, eyes = mid(RIGHT_EAR, LEFT_EAR), mid(RIGHT_EYE, LEFT_EYE)
        left = None
        if ears is not None:
            left = rest[LEFT_EAR] - rest[RIGHT_EAR]
        elif eyes is not None:
            left = rest[LEFT_EYE] - rest[RIGHT_EYE]
        centre = ears if ears is not None else eyes
        forward = None
        if rest[NOSE] is not None and centre is not None:
            forward = rest[NOSE] - centre
        elif eyes is not None and ears is not None:
            forward = eyes - ears
        if forward is None:
            return None
        if left is not None and left.length > 1e-9:
            left = left.normalized()
            forward = forward - left * forward.dot(left)
        if forward.length < 1e-9:
            return None
        pose_bone = armature.pose.bones[resolved.head_bone]
        to_local = pose_bone.bone.matrix_local.to_3x3().inverted()
        return cls(pose_bone, (to_local @ forward).normalized(), None if left is None else (to_local @ left).normalized())


def _rest_points(armature, resolved: ResolvedMap) -> list:
    """Armature-space rest positions of the 18 body points (None where unmapped)."""
    bones = armature.pose.bones
    out: list = [None] * N_BODY

    def at_rest(point):
        pb = bones[point.bone]
        return pb.bone.matrix_local @ _local_vector(pb, point)

    for row, point in enumerate(resolved.points[:N_BODY]):
        if point is None or point.midpoint is not None:
            continue
        if point.members is not None:
            out[row] = sum((at_rest(m) for m in point.members), Vector()) / len(point.members)
        else:
            out[row] = at_rest(point)
    for row, point in enumerate(resolved.points[:N_BODY]):
        if point is not None and point.midpoint is not None:
            a, b = point.midpoint
            out[row] = (out[a] + out[b]) * 0.5
    return out


class KeypointProjector:
    """A resolved bone map bound to one armature, ready to turn evaluated poses into keypoints.

    Point order: 18 body, 21 right hand, 21 left hand, 68 face (the ResolvedMap's order).
    hide_turned_away: mark face points on a head turned away from the camera missing (needs the
    map's head bone; see HeadFacing).
    """

    def __init__(self, armature, resolved: ResolvedMap, hands: bool = False, face: bool = False, hide_turned_away: bool = True):
        self.armature = armature
        self.resolved = resolved
        self.hands = hands and resolved.has_hands()
        self.face = face and resolved.has_face()
        self._count = len(resolved.points)
        pose_bones = armature.pose.bones
        # Per bone: the rows it places and their local vectors; means: (row, [(bone index, vector)]).
        bone_order: dict[str, int] = {}
        self._bones: list = []          # pose bones read each frame
        self._bone_points: list = []    # (row, bone index, local vector)
        self._means: list = []          # (row, [(bone index, local vector), ...])
        self._midpoints: list = []      # (row, a, b)

        def bone_index(name: str) -> int:
            if name not in bone_order:
                bone_order[name] = len(self._bones)
                self._bones.append(pose_bones[name])
            return bone_order[name]

        for row, p in enumerate(resolved.points):
            if p is None or not self._wanted(row):
                continue
            if p.midpoint is not None:
                self._midpoints.append((row, *p.midpoint))
            elif p.members is not None:
                self._means.append((row, [(bone_index(m.bone), _local_vector(pose_bones[m.bone], m)) for m in p.members]))
            else:
                self._bone_points.append((row, bone_index(p.bone), _local_vector(pose_bones[p.bone], p)))
        self.facing = HeadFacing.from_rest_pose(armature, resolved) if hide_turned_away else None

    def _wanted(self, row: int) -> bool:
        if row < N_BODY:
            return True
        if row < FACE_START:
            return self.hands
        return self.face

    def camera_points(self, camera) -> np.ndarray:
        """(N, 3) points in the camera's space (it looks along -Z) for the current evaluated pose;
        NaN where unmapped."""
        to_camera = camera.matrix_world.normalized().inverted() @ self.armature.matrix_world
        mats = [to_camera @ pb.matrix for pb in self._bones]
        out = np.full((self._count, 3), np.nan)
        for row, bone, v in self._bone_points:
            out[row] = mats[bone] @ v
        for row, members in self._means:
            out[row] = sum((mats[bone] @ v for bone, v in members), Vector()) / len(members)
        for row, a, b in self._midpoints:
            out[row] = (out[a] + out[b]) * 0.5
        return out

    def turned_away(self, camera, co: np.ndarray) -> np.ndarray:
        """(N,) bool: face points the head hides from the camera (see the angles above)."""
        hidden = np.zeros(self._count, dtype=bool)
        if self.facing is None:
            return hidden
        head = (camera.matrix_world.normalized().inverted() @ self.armature.matrix_world).to_3x3() @ self.facing.pose_bone.matrix.to_3x3()
        forward = np.array((head @ self.facing.forward).normalized())
        left = None if self.facing.left is None else np.array((head @ self.facing.left).normalized())
        rows = [NOSE, RIGHT_EYE, LEFT_EYE, RIGHT_EAR, LEFT_EAR] + (list(range(FACE_START, FACE_START + FACE_POINTS)) if self.face else [])
        points = co[rows]
        if camera.data.type == 'ORTHO':
            to_cam = np.broadcast_to((0.0, 0.0, 1.0), points.shape)
        else:
            to_cam = _divide(-points, np.sqrt((points * points).sum(axis=1, keepdims=True)))
        face_away = to_cam @ forward < FACE_AWAY
        side = to_cam @ left if left is not None else np.zeros(len(rows))  # > 0: the left side faces the camera
        hide = face_away.copy()
        hide[3:5] = False  # ears: their side alone decides
        if left is not None:
            hide[1] |= -side[1] < EYE_SIDE_AWAY
            hide[2] |= side[2] < EYE_SIDE_AWAY
            hide[3] = -side[3] < EAR_SIDE_AWAY
            hide[4] = side[4] < EAR_SIDE_AWAY
        hidden[rows] = hide
        return hidden

    def project_frame(self, scene, camera, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """((N, 3) pixel x, y, confidence at width x height, (N,) bool turned away) for the current
        evaluated pose."""
        co = self.camera_points(camera)
        view = _view_coords(scene, camera, co)
        x, y, z = view[:, 0], view[:, 1], view[:, 2]
        seen = (z > camera.data.clip_start) & (x >= 0.0) & (x <= 1.0) & (y >= 0.0) & (y <= 1.0)  # NaN compares False
        away = self.turned_away(camera, co) & seen
        seen &= ~away
        out = np.full((self._count, 3), np.nan)
        out[:, 2] = 0.0
        out[seen, 0] = x[seen] * width
        out[seen, 1] = (1.0 - y[seen]) * height
        out[seen, 2] = 1.0
        return out, away

    def project(self, scene, camera, width: int, height: int) -> np.ndarray:
        """(N, 3) pixel x, y, confidence at width x height for the current evaluated pose."""
        return self.project_frame(scene, camera, width, height)[0]

    def frame_keypoints(self, frame: int, scene, camera, width: int, height: int) -> tuple[FrameKeypoints, np.ndarray]:
        """(the frame's keypoints, (18,) bool: body points turned away from the camera)."""
        pts, away = self.project_frame(scene, camera, width, height)
        hands = pts[N_BODY: FACE_START].reshape(2, HAND_POINTS, 3) if self.hands else None
        face = pts[FACE_START: FACE_START + FACE_POINTS] if self.face else None
        return FrameKeypoints(frame=frame, body=pts[:N_BODY], hands=hands, face=face), away[:N_BODY]
