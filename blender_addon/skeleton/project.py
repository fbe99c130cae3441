"""From an evaluated armature to 2D keypoints through the scene camera (bpy).

Per frame (after the caller's `scene.frame_set`): read every pose bone's matrix in one
`foreach_get`, place the mapped points (head, tail, offsets, midpoints) in armature space, take
them to world space and project them the way `bpy_extras.object_utils.world_to_camera_view`
does, vectorised with numpy (tests check the two agree). Pixels are (x * W, (1 - y) * H) at the
map size: the camera frame (as the render resolution, pixel aspect, sensor fit and shift define
it) is stretched onto the W x H map, so a map size with the render's aspect (the add-on rounds the
render size to multiples of 8) reproduces the render's framing.

A point is missing (NaN, confidence 0) when it is unmapped, at or behind the camera's clip start
(world_to_camera_view returns plausible x, y for those), or outside the frame.
"""

from __future__ import annotations

import numpy as np

from .bone_maps import FACE_POINTS, HAND_POINTS, ResolvedMap
from .bone_maps import BODY_NAMES
from .errors import NoCamera
from .track import FrameKeypoints

N_BODY = len(BODY_NAMES)


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


def camera_view_coords(scene, camera, world_points: np.ndarray) -> np.ndarray:
    """world_to_camera_view for many points: (N, 3) world -> (N, 3) x, y in 0..1 from the frame's
    bottom-left, z = depth in front of the camera."""
    inv = np.array(camera.matrix_world.normalized().inverted(), dtype=np.float64)
    co = world_points @ inv[:3, :3].T + inv[:3, 3]
    z = -co[:, 2]
    top_right, bottom_right, bottom_left = (np.array(v, dtype=np.float64) for v in camera.data.view_frame(scene=scene)[:3])
    if camera.data.type == 'ORTHO':
        min_x, max_x = bottom_left[0], top_right[0]
        min_y, max_y = bottom_right[1], top_right[1]
    else:
        # The frame corners scaled to depth z: v * z / -v.z (all corners share v.z).
        with np.errstate(divide="ignore", invalid="ignore"):
            s = z / -top_right[2]
        min_x, max_x = bottom_left[0] * s, top_right[0] * s
        min_y, max_y = bottom_right[1] * s, top_right[1] * s
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (co[:, 0] - min_x) / (max_x - min_x)
        y = (co[:, 1] - min_y) / (max_y - min_y)
    return np.stack([x, y, z], axis=1)


class KeypointProjector:
    """A resolved bone map bound to one armature, ready to turn evaluated poses into keypoints.

    Point order: 18 body, 21 right hand, 21 left hand, 68 face (the ResolvedMap's order).
    """

    def __init__(self, armature, resolved: ResolvedMap, hands: bool = False, face: bool = False):
        self.armature = armature
        self.resolved = resolved
        self.hands = hands and resolved.has_hands()
        self.face = face and resolved.has_face()
        pose_bones = armature.pose.bones
        self._bone_count = len(pose_bones)
        index = {name: i for i, name in enumerate(pose_bones.keys())}
        points = resolved.points
        n = len(points)
        self._bone_rows, self._bone_index, local = [], [], []
        self._midpoints = []
        for row, p in enumerate(points):
            if p is None or not self._wanted(row):
                continue
            if p.midpoint is not None:
                self._midpoints.append((row, *p.midpoint))
                continue
            length = pose_bones[p.bone].bone.length
            v = np.array(p.offset) + np.array(p.offset_lengths) * length
            if p.at == "tail":
                v[1] += length  # a pose bone's tail is its matrix applied to (0, rest length, 0)
            self._bone_rows.append(row)
            self._bone_index.append(index[p.bone])
            local.append(v)
        self._local = np.array(local, dtype=np.float64).reshape(-1, 3)
        self._bone_rows = np.array(self._bone_rows, dtype=np.int64)
        self._bone_index = np.array(self._bone_index, dtype=np.int64)
        self._count = n
        self._matrix_buffer = np.empty(self._bone_count * 16, dtype=np.float32)

    def _wanted(self, row: int) -> bool:
        if row < N_BODY:
            return True
        if row < N_BODY + 2 * HAND_POINTS:
            return self.hands
        return self.face

    def armature_points(self) -> np.ndarray:
        """(N, 3) points in armature space for the current evaluated pose; NaN where unmapped."""
        self.armature.pose.bones.foreach_get("matrix", self._matrix_buffer)
        # Matrices come out column by column; transpose to rows so m[:3, 3] is the head.
        mats = self._matrix_buffer.reshape(-1, 4, 4).transpose(0, 2, 1)[self._bone_index].astype(np.float64)
        out = np.full((self._count, 3), np.nan)
        if len(self._bone_rows):
            out[self._bone_rows] = np.einsum("nij,nj->ni", mats[:, :3, :3], self._local) + mats[:, :3, 3]
        for row, a, b in self._midpoints:
            out[row] = (out[a] + out[b]) * 0.5
        return out

    def project(self, scene, camera, width: int, height: int) -> np.ndarray:
        """(N, 3) pixel x, y, confidence at width x height for the current evaluated pose."""
        local = self.armature_points()
        mw = np.array(self.armature.matrix_world, dtype=np.float64)
        world = local @ mw[:3, :3].T + mw[:3, 3]
        view = camera_view_coords(scene, camera, world)
        x, y, z = view[:, 0], view[:, 1], view[:, 2]
        with np.errstate(invalid="ignore"):
            seen = (z > camera.data.clip_start) & (x >= 0.0) & (x <= 1.0) & (y >= 0.0) & (y <= 1.0)
        seen &= np.isfinite(local).all(axis=1)
        out = np.full((self._count, 3), np.nan)
        out[:, 2] = 0.0
        out[seen, 0] = x[seen] * width
        out[seen, 1] = (1.0 - y[seen]) * height
        out[seen, 2] = 1.0
        return out

    def frame_keypoints(self, frame: int, scene, camera, width: int, height: int) -> FrameKeypoints:
        pts = self.project(scene, camera, width, height)
        hands = pts[N_BODY: N_BODY + 2 * HAND_POINTS].reshape(2, HAND_POINTS, 3) if self.hands else None
        face = pts[N_BODY + 2 * HAND_POINTS: N_BODY + 2 * HAND_POINTS + FACE_POINTS] if self.face else None
        return FrameKeypoints(frame=frame, body=pts[:N_BODY].copy(),
                              hands=None if hands is None else hands.copy(), face=None if face is None else face.copy())
