"""Motion capture drives the bundled rig: a BVH written by the test, imported with Blender's importer."""

import numpy as np

from rig_fixture import ROOT, bundled_rig  # noqa: F401 - puts rigs/ on the path

import bvh  # noqa: E402

JOINTS = [  # name, parent, offset (BVH units: centimetres, Y up)
    ("Hips", None, (0, 95, 0)), ("Spine", "Hips", (0, 10, 0)), ("Neck", "Spine", (0, 40, 0)), ("Head", "Neck", (0, 11, 0)),
    ("RightArm", "Spine", (-18, 40, 0)), ("RightForeArm", "RightArm", (-27, 0, 0)), ("RightHand", "RightForeArm", (-25, 0, 0)),
    ("LeftArm", "Spine", (18, 40, 0)), ("LeftForeArm", "LeftArm", (27, 0, 0)), ("LeftHand", "LeftForeArm", (25, 0, 0)),
    ("RightUpLeg", "Hips", (-10, 0, 0)), ("RightLeg", "RightUpLeg", (0, -43, 0)), ("RightFoot", "RightLeg", (0, -43, 0)),
    ("LeftUpLeg", "Hips", (10, 0, 0)), ("LeftLeg", "LeftUpLeg", (0, -43, 0)), ("LeftFoot", "LeftLeg", (0, -43, 0)),
]


def _write_bvh(path, frames=6):
    children = {}
    for name, parent, _ in JOINTS:
        children.setdefault(parent, []).append(name)
    offsets = {name: off for name, _, off in JOINTS}
    lines = ["HIERARCHY"]

    def joint(name, depth):
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {' '.join(map(str, offsets[name]))}")
        channels = "6 Xposition Yposition Zposition Zrotation Xrotation Yrotation" if depth == 0 else "3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}  CHANNELS {channels}")
        for child in children.get(name, []):
            joint(child, depth + 1)
        if name not in children:
            lines.extend([f"{pad}  End Site", pad + "  {", f"{pad}    OFFSET 0 -5 0", pad + "  }"])
        lines.append(pad + "}")

    joint("Hips", 0)
    lines += ["MOTION", f"Frames: {frames}", "Frame Time: 0.041667"]
    order = []

    def walk(name):
        order.append(name)
        for child in children.get(name, []):
            walk(child)

    walk("Hips")
    for f in range(frames):
        values = []
        for name in order:
            if name == "Hips":
                values += [0, 95, 0, 0, 0, 0]
            elif name == "RightArm":
                values += [-15 * f, 0, 0]  # the right arm rises frame by frame
            else:
                values += [0, 0, 0]
        lines.append(" ".join(f"{v:.4f}" for v in values))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_bvh_clip_drives_the_bundled_rig(empty_blend, tmp_path):
    scene = empty_blend
    rig, _camera = bundled_rig.build_bundled_rig_scene(scene, motion=False)
    mocap = bvh.drive_with_bvh(scene, rig, str(_write_bvh(tmp_path / "raise.bvh")))
    assert mocap.type == "ARMATURE" and scene.frame_end >= scene.frame_start + 5
    wrists, ankles = [], []
    for frame in range(scene.frame_start, scene.frame_start + 6):
        scene.frame_set(frame)
        wrists.append(np.array(rig.matrix_world @ rig.pose.bones["hand.R"].head))
        ankles.append(np.array(rig.matrix_world @ rig.pose.bones["foot.R"].head))
    heights = [w[2] for w in wrists]
    assert all(b > a for a, b in zip(heights, heights[1:]))  # the wrist follows the rising arm
    assert heights[-1] - heights[0] > 0.2
    assert np.allclose(ankles[0], ankles[-1], atol=1e-4)  # the legs did not move
    forearm = np.linalg.norm(wrists[-1] - np.array(rig.matrix_world @ rig.pose.bones["forearm.R"].head))
    assert abs(forearm - np.linalg.norm(np.subtract(bundled_rig.KEYPOINTS["right_wrist"], bundled_rig.KEYPOINTS["right_elbow"]))) < 1e-4


def test_a_bvh_without_the_needed_joints_is_refused_by_name(empty_blend, tmp_path):
    import pytest

    scene = empty_blend
    rig, _ = bundled_rig.build_bundled_rig_scene(scene, motion=False)
    path = _write_bvh(tmp_path / "raise.bvh")
    path.write_text(path.read_text().replace("RightForeArm", "RForearm"))
    with pytest.raises(bvh.BvhError, match="lacks the joints RightForeArm"):
        bvh.drive_with_bvh(scene, rig, str(path))
