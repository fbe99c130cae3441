"""Smooth 2D motions as COCO-18 keypoint sequences.

A character is a 2D skeleton (`Proportions`, in body-height units) posed by a few angles per
frame (`Pose`): the root position, a lean, a yaw (turning: horizontal offsets shrink by cos(yaw),
face points slide round the head), and per side the upper-arm, forearm, thigh and shin angles.
An angle of 0 points straight down; positive angles swing the limb away from the body.

Each motion family (`MOTIONS`) is a function of time with a few random parameters (speed,
amplitude, phase), so a clip is a smooth, plausible movement rather than i.i.d. random poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# COCO-18 (OpenPose) keypoint order.
KEYPOINTS = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)
INDEX = {name: i for i, name in enumerate(KEYPOINTS)}
# Image-x sign of each side for a character facing the camera: its right is on the image's left.
SIDES = {"r": -1.0, "l": 1.0}


@dataclass
class Proportions:
    """Segment lengths in units of the standing height (head top to ankles ~ 1)."""

    head_radius: float = 0.075
    neck: float = 0.05
    torso: float = 0.30
    shoulder_half: float = 0.11
    hip_half: float = 0.065
    upper_arm: float = 0.16
    forearm: float = 0.15
    thigh: float = 0.22
    shin: float = 0.21

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Proportions":
        base = cls()
        jitter = lambda v, s: float(v * rng.uniform(1 - s, 1 + s))  # noqa: E731
        return cls(
            head_radius=jitter(base.head_radius, 0.2),
            neck=jitter(base.neck, 0.3),
            torso=jitter(base.torso, 0.12),
            shoulder_half=jitter(base.shoulder_half, 0.25),
            hip_half=jitter(base.hip_half, 0.25),
            upper_arm=jitter(base.upper_arm, 0.12),
            forearm=jitter(base.forearm, 0.12),
            thigh=jitter(base.thigh, 0.12),
            shin=jitter(base.shin, 0.12),
        )

    @classmethod
    def sample_varied(cls, rng: np.random.Generator) -> "Proportions":
        """Wider variety than `sample` (the rich data style): a body type, then per-segment jitter.

        child: big head, short limbs; tall: long limbs, narrow; stocky: broad, short legs; or average.
        """
        kind = ("average", "child", "tall", "stocky")[int(rng.integers(4))]
        head, limbs, width = {"average": (1.0, 1.0, 1.0), "child": (1.45, 0.85, 0.95), "tall": (0.9, 1.12, 0.85), "stocky": (1.05, 0.9, 1.3)}[kind]
        base = cls()
        jitter = lambda v, s: float(v * rng.uniform(1 - s, 1 + s))  # noqa: E731
        return cls(
            head_radius=jitter(base.head_radius * head, 0.15),
            neck=jitter(base.neck, 0.3),
            torso=jitter(base.torso, 0.12),
            shoulder_half=jitter(base.shoulder_half * width, 0.2),
            hip_half=jitter(base.hip_half * width, 0.2),
            upper_arm=jitter(base.upper_arm * limbs, 0.1),
            forearm=jitter(base.forearm * limbs, 0.1),
            thigh=jitter(base.thigh * limbs, 0.1),
            shin=jitter(base.shin * limbs, 0.1),
        )


@dataclass
class Pose:
    """One frame's angles (radians) and root offset (body-height units, image axes: y down)."""

    x: float = 0.0
    y: float = 0.0
    lean: float = 0.0
    yaw: float = 0.0
    head_tilt: float = 0.0
    r_arm: float = 0.15
    r_forearm: float = 0.1
    l_arm: float = 0.15
    l_forearm: float = 0.1
    r_thigh: float = 0.05
    r_shin: float = 0.0
    l_thigh: float = 0.05
    l_shin: float = 0.0


def _direction(angle: float, side: float, lean: float) -> np.ndarray:
    """Unit vector of a limb at `angle` from straight down, mirrored by `side`, rotated by `lean`."""
    a = side * angle + lean
    return np.array([np.sin(a), np.cos(a)])


def keypoints(pose: Pose, body: Proportions) -> np.ndarray:
    """(18, 3) keypoints in body units (x, y, visibility), the pelvis centre at (pose.x, pose.y)."""
    out = np.zeros((18, 3))
    out[:, 2] = 1.0
    squash = np.cos(pose.yaw)  # turning narrows the shoulders and hips on screen
    pelvis = np.array([pose.x, pose.y])
    up = -_direction(0.0, 1.0, pose.lean)  # pelvis -> neck
    across = np.array([-up[1], up[0]])  # image-right along the shoulders
    neck = pelvis + up * body.torso
    head = neck + _direction(0.0, 1.0, pose.lean + pose.head_tilt) * -(body.neck + body.head_radius)
    out[INDEX["neck"]] = (*neck, 1)
    for side_name, side in SIDES.items():
        shoulder = neck + across * side * body.shoulder_half * squash
        hip = pelvis + across * side * body.hip_half * squash
        arm = getattr(pose, f"{side_name}_arm")
        elbow = shoulder + _direction(arm, side, pose.lean) * body.upper_arm
        wrist = elbow + _direction(arm + getattr(pose, f"{side_name}_forearm"), side, pose.lean) * body.forearm
        thigh = getattr(pose, f"{side_name}_thigh")
        knee = hip + _direction(thigh, side, 0.0) * body.thigh
        ankle = knee + _direction(thigh + getattr(pose, f"{side_name}_shin"), side, 0.0) * body.shin
        for name, point in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hip", hip), ("knee", knee), ("ankle", ankle)):
            out[INDEX[f"{side_name}_{name}"]] = (*point, 1)
    # Face points sit on the head's horizontal circle at these azimuths (0 = facing the camera).
    r = body.head_radius
    for name, azimuth, height in (("nose", 0.0, 0.15), ("r_eye", -0.45, -0.2), ("l_eye", 0.45, -0.2), ("r_ear", -1.45, -0.05), ("l_ear", 1.45, -0.05)):
        angle = azimuth + pose.yaw
        visible = 1.0 if np.cos(angle) > -0.05 else 0.0
        out[INDEX[name]] = (head[0] + r * 0.95 * np.sin(angle), head[1] + r * height, visible)
    return out


def head_centre(pose: Pose, body: Proportions) -> np.ndarray:
    up = -_direction(0.0, 1.0, pose.lean)
    neck = np.array([pose.x, pose.y]) + up * body.torso
    return neck + _direction(0.0, 1.0, pose.lean + pose.head_tilt) * -(body.neck + body.head_radius)


# -- motion families: (time in seconds, params) -> Pose --------------------------------------------
def _walk(t: float, p: dict) -> Pose:
    s = np.sin(p["w"] * t + p["phase"])
    c = np.cos(p["w"] * t + p["phase"])
    return Pose(
        x=p["drift"] * t, y=-0.01 * abs(c), lean=0.03 * s, yaw=p["yaw"],
        r_arm=0.15 + p["amp"] * 0.6 * max(s, 0), r_forearm=0.2 + 0.2 * max(s, 0),
        l_arm=0.15 + p["amp"] * 0.6 * max(-s, 0), l_forearm=0.2 + 0.2 * max(-s, 0),
        r_thigh=0.05 + p["amp"] * 0.5 * max(-s, 0), r_shin=-0.35 * p["amp"] * max(-c, 0),
        l_thigh=0.05 + p["amp"] * 0.5 * max(s, 0), l_shin=-0.35 * p["amp"] * max(c, 0),
    )


def _wave(t: float, p: dict) -> Pose:
    s = np.sin(p["w"] * t + p["phase"])
    side = "r" if p["side"] > 0 else "l"
    other = "l" if side == "r" else "r"
    pose = Pose(yaw=p["yaw"], head_tilt=0.1 * s * p["amp"], x=p["drift"] * t)
    setattr(pose, f"{side}_arm", 2.3 + 0.2 * s)
    setattr(pose, f"{side}_forearm", 0.3 + 0.6 * p["amp"] * s)
    setattr(pose, f"{other}_arm", 0.15 + 0.05 * s)
    return pose


def _jump(t: float, p: dict) -> Pose:
    phase = (p["w"] * t + p["phase"]) % (2 * np.pi)
    air = max(0.0, np.sin(phase))
    crouch = max(0.0, -np.sin(phase))
    return Pose(
        x=p["drift"] * t, y=-0.18 * p["amp"] * air + 0.08 * crouch, yaw=p["yaw"],
        r_arm=0.3 + 2.2 * air * p["amp"], l_arm=0.3 + 2.2 * air * p["amp"], r_forearm=0.2, l_forearm=0.2,
        r_thigh=0.1 + 0.5 * crouch, l_thigh=0.1 + 0.5 * crouch, r_shin=-1.0 * crouch, l_shin=-1.0 * crouch,
    )


def _jacks(t: float, p: dict) -> Pose:
    open_ = 0.5 - 0.5 * np.cos(p["w"] * t + p["phase"])
    return Pose(
        x=p["drift"] * t, y=-0.03 * np.sin(2 * (p["w"] * t + p["phase"])), yaw=p["yaw"],
        r_arm=0.2 + 2.4 * open_ * p["amp"], l_arm=0.2 + 2.4 * open_ * p["amp"], r_forearm=0.1, l_forearm=0.1,
        r_thigh=0.05 + 0.35 * open_ * p["amp"], l_thigh=0.05 + 0.35 * open_ * p["amp"],
    )


def _squat(t: float, p: dict) -> Pose:
    down = 0.5 - 0.5 * np.cos(p["w"] * t + p["phase"])
    return Pose(
        x=p["drift"] * t, y=0.15 * down * p["amp"], yaw=p["yaw"], lean=0.05 * down,
        r_arm=0.2 + 1.3 * down, l_arm=0.2 + 1.3 * down, r_forearm=0.0, l_forearm=0.0,
        r_thigh=0.1 + 0.9 * down * p["amp"], l_thigh=0.1 + 0.9 * down * p["amp"],
        r_shin=-1.4 * down * p["amp"], l_shin=-1.4 * down * p["amp"],
    )


def _turn(t: float, p: dict) -> Pose:
    s = np.sin(p["w"] * t + p["phase"])
    return Pose(
        x=p["drift"] * t, yaw=1.1 * p["amp"] * s, head_tilt=0.05 * s,
        r_arm=0.2 + 0.2 * abs(s), l_arm=0.2 + 0.2 * abs(s), r_forearm=0.3, l_forearm=0.3,
    )


def _dance(t: float, p: dict) -> Pose:
    """Held out of training: both arms waving out of phase with a hip sway and a lean."""
    a = p["w"] * t + p["phase"]
    return Pose(
        x=0.05 * np.sin(a) + p["drift"] * t, y=0.02 * np.sin(2 * a), lean=0.12 * p["amp"] * np.sin(a), yaw=0.3 * np.sin(0.5 * a),
        r_arm=1.4 + 0.9 * np.sin(a), r_forearm=0.6 + 0.5 * np.cos(a),
        l_arm=1.4 - 0.9 * np.sin(a), l_forearm=0.6 - 0.5 * np.cos(a),
        r_thigh=0.1 + 0.2 * max(np.sin(a), 0), l_thigh=0.1 + 0.2 * max(-np.sin(a), 0),
        r_shin=-0.3 * max(np.sin(a), 0), l_shin=-0.3 * max(-np.sin(a), 0),
    )


MOTIONS = {"walk": _walk, "wave": _wave, "jump": _jump, "jacks": _jacks, "squat": _squat, "turn": _turn, "dance": _dance}
TRAIN_MOTIONS = ("walk", "wave", "jump", "jacks", "squat", "turn")
HELD_OUT_MOTIONS = ("dance",)


def sample_motion_params(rng: np.random.Generator) -> dict:
    return {
        "w": float(rng.uniform(2.5, 6.0)),  # angular speed, rad/s
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "amp": float(rng.uniform(0.6, 1.0)),
        "drift": float(rng.uniform(-0.08, 0.08)),
        "yaw": float(rng.uniform(-0.5, 0.5)),
        "side": float(rng.choice([-1.0, 1.0])),
    }


def motion_poses(name: str, params: dict, times: np.ndarray) -> list[Pose]:
    return [MOTIONS[name](float(t), params) for t in times]
