"""Skeleton maps for the synthetic data, drawn by the contract's drawing code.

The model must see at training time exactly the maps the add-on draws at inference time, so there
is one implementation: `aa_contract/draw.py` (`draw_pose_map`, DWPose style, numpy only).
"""

from __future__ import annotations

import numpy as np

from aa_contract.draw import draw_pose_map as _draw


def draw_pose_map(width: int, height: int, body: np.ndarray) -> np.ndarray:
    """body: (18, 3) pixel x, y, confidence (COCO-18) -> (height, width, 3) uint8 skeleton map."""
    return np.asarray(_draw(width, height, body))


# -- a job's keypoint track, drawn with OpenCV --------------------------------------------------------
def draw_keypoints_cv2(width: int, height: int, keypoints) -> np.ndarray:
    """The skeleton map of one frame of a keypoint track (`aa_contract.keypoints.FrameKeypoints`),
    drawn with the OpenCV calls the DWPose drawing makes (ellipse2Poly + fillConvexPoly limbs, the
    canvas dimmed to 60%, circle joints; 2-px lines for hands, dots for the face): (H, W, 3) uint8.

    Pixel-identical to `aa_contract.draw.draw_keypoints` (the numpy drawing the add-on and the
    training data use), which itself equals controlnet-aux's DWPose drawing; tests hold all three
    together. OpenCV is some 20x faster, which is why the engine draws a job's maps with it.
    """
    import math

    import cv2

    from aa_contract import draw
    from aa_contract.keypoints import file_precision, present

    canvas = np.zeros((int(height), int(width), 3), dtype=np.uint8)
    body = file_precision(keypoints.body)
    shown = present(body)
    norm_x, norm_y = body[:, 0] / float(width), body[:, 1] / float(height)
    for limb, (a, b) in enumerate(draw.BODY_LIMBS):
        if not (shown[a] and shown[b]):
            continue
        ys = (norm_x[a] * float(width), norm_x[b] * float(width))  # DWPose's Y is x
        xs = (norm_y[a] * float(height), norm_y[b] * float(height))
        mean_x, mean_y = (xs[0] + xs[1]) / 2, (ys[0] + ys[1]) / 2
        length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        polygon = cv2.ellipse2Poly((int(mean_y), int(mean_x)), (int(length / 2), draw.STICK_HALF_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, draw.BODY_COLORS[limb])
    canvas = (canvas * draw.LIMB_DIMMING).astype(np.uint8)
    for joint in range(len(body)):
        if shown[joint]:
            cv2.circle(canvas, (int(norm_x[joint] * width), int(norm_y[joint] * height)), draw.JOINT_RADIUS,
                       draw.BODY_COLORS[joint], thickness=-1)
    if keypoints.hands is not None:
        for points in file_precision(keypoints.hands):
            ok_points = present(points)
            xs = [int(v / float(width) * width) if p else 0 for v, p in zip(points[:, 0], ok_points)]
            ys = [int(v / float(height) * height) if p else 0 for v, p in zip(points[:, 1], ok_points)]
            ok = [bool(p) and xs[i] > draw.EDGE_EPS and ys[i] > draw.EDGE_EPS for i, p in enumerate(ok_points)]
            for edge, (a, b) in enumerate(draw.HAND_EDGES):
                if ok[a] and ok[b]:
                    cv2.line(canvas, (xs[a], ys[a]), (xs[b], ys[b]), draw.HAND_COLORS[edge], thickness=2)
            for i in range(len(points)):
                if ok[i]:
                    cv2.circle(canvas, (xs[i], ys[i]), draw.HAND_JOINT_RADIUS, (0, 0, 255), thickness=-1)
    if keypoints.face is not None:
        face = file_precision(keypoints.face)
        for ok, (px, py, _) in zip(present(face), face):
            x, y = int(px / float(width) * width), int(py / float(height) * height)
            if ok and x > draw.EDGE_EPS and y > draw.EDGE_EPS:
                cv2.circle(canvas, (x, y), draw.FACE_RADIUS, (255, 255, 255), thickness=-1)
    return canvas
