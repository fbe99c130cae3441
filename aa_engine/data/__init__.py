"""Synthetic training and evaluation data: procedural characters in smooth motions.

motions.py     COCO-18 keypoint sequences from a few motion families (walk, wave, jump, ...)
characters.py  random appearances drawn over those keypoints
pose_maps.py   the OpenPose-style skeleton maps (the add-on's drawing, one implementation)
dataset.py     (split, index) -> clip of reference / skeleton maps / target frames, and batches
"""

from aa_engine.data.dataset import SPLITS, Batch, Clip, make_batch, make_clip

__all__ = ["SPLITS", "Batch", "Clip", "make_batch", "make_clip"]
