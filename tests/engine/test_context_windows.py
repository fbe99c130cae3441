import pytest
import torch

from aa_engine.pipeline.context_windows import WindowAverage, context_windows


@pytest.mark.parametrize("n, size, overlap", [(1, 24, 4), (24, 24, 4), (25, 24, 4), (100, 24, 4), (10, 4, 2), (7, 3, 0), (33, 16, 8)])
def test_windows_cover_every_frame_with_at_least_the_overlap(n, size, overlap):
    windows = context_windows(n, size, overlap)
    assert sorted({f for w in windows for f in w}) == list(range(n))
    assert all(len(w) == min(n, size) for w in windows)
    assert all(w == list(range(w[0], w[0] + len(w))) for w in windows)  # contiguous, no wrap-around
    for a, b in zip(windows, windows[1:]):
        assert len(set(a) & set(b)) >= overlap
        assert b[0] > a[0]


def test_a_video_that_fits_gets_one_window():
    assert context_windows(16, 24, 4) == [list(range(16))]
    assert context_windows(16, 24, 4, loop=True) == [list(range(16))]


def test_looped_windows_wrap_round_to_the_start_like_the_release():
    # the released implementation's "uniform" scheduler (closed loop, stride 1) at 30 and 48 frames
    assert context_windows(30, 24, 4, loop=True) == [list(range(24)), list(range(20, 30)) + list(range(14))]
    assert context_windows(48, 24, 4, loop=True) == [
        list(range(24)), list(range(20, 44)), list(range(40, 48)) + list(range(16))]


@pytest.mark.parametrize("n, size, overlap", [(25, 24, 4), (100, 24, 4), (10, 4, 2), (7, 3, 0), (33, 16, 8)])
def test_looped_windows_cover_every_frame_and_the_seam(n, size, overlap):
    windows = context_windows(n, size, overlap, loop=True)
    assert sorted({f for w in windows for f in w}) == list(range(n))
    assert all(len(w) == size and len(set(w)) == size for w in windows)
    for a, b in zip(windows, windows[1:] + windows[:1]):  # the last window overlaps the first
        assert len(set(a) & set(b)) >= overlap
    assert any(n - 1 in w and 0 in w for w in windows)  # the seam is denoised in one window


def test_window_average_divides_by_coverage():
    avg = WindowAverage((1, 1, 5, 1, 1), "cpu")
    avg.add([0, 1, 2], torch.full((1, 1, 3, 1, 1), 1.0))
    avg.add([2, 3, 4], torch.full((1, 1, 3, 1, 1), 3.0))
    assert avg.result().flatten().tolist() == [1.0, 1.0, 2.0, 3.0, 3.0]


def test_window_average_refuses_uncovered_frames():
    avg = WindowAverage((1, 1, 3, 1, 1), "cpu")
    avg.add([0], torch.ones(1, 1, 1, 1, 1))
    with pytest.raises(ValueError):
        avg.result()
