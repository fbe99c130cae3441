"""Overlapping context windows over a video's frames (pure functions, no model).

Each denoising step runs the model on every window; frames covered by several windows get the
average of those windows' predictions. By default windows never wrap: the last window is aligned
to the last frame, right for a shot that starts and ends in different poses. With `loop=True` the
windows run round the end of the clip back to its start, as the released implementation's
"uniform" scheduler does (closed loop, stride 1): the last frames are denoised together with the
first ones, so a cyclic motion (a walk cycle) comes out as a seamless loop.
"""

from __future__ import annotations

import torch


def context_windows(num_frames: int, context_frames: int, overlap: int, loop: bool = False) -> list[list[int]]:
    """Frame indices of each window, in order. Every frame is covered; consecutive windows share
    at least `overlap` frames. A video that fits one window gets exactly one window.

    loop: windows start every context_frames - overlap frames and wrap round to frame 0, e.g.
    30 frames, 24/4 -> [0..23], [20..29, 0..13]."""
    if num_frames < 1:
        return []
    if num_frames <= context_frames:
        return [list(range(num_frames))]
    stride = context_frames - overlap
    if loop:
        return [[(s + e) % num_frames for e in range(context_frames)] for s in range(0, num_frames, stride)]
    starts = list(range(0, num_frames - context_frames + 1, stride))
    if starts[-1] + context_frames < num_frames:
        starts.append(num_frames - context_frames)
    return [list(range(s, s + context_frames)) for s in starts]


class WindowAverage:
    """Accumulates per-window predictions along the frame axis and returns their average.

    shape: the full (b, c, f, h, w) prediction shape.
    """

    def __init__(self, shape: tuple[int, ...], device, dtype=torch.float32):
        self.total = torch.zeros(shape, device=device, dtype=dtype)
        self.count = torch.zeros((1, 1, shape[2], 1, 1), device=device, dtype=dtype)

    def add(self, frames: list[int], prediction: torch.Tensor) -> None:
        self.total[:, :, frames] += prediction.to(self.total.dtype)
        self.count[:, :, frames] += 1

    def result(self) -> torch.Tensor:
        if bool((self.count == 0).any()):
            raise ValueError("some frames are covered by no window")
        return self.total / self.count
