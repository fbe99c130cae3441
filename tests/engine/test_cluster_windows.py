"""Window parallelism without Ray: the split of a step's context windows and the lead that gathers
them (aa_engine/cluster/window_parallel.py) give latents bit-identical to one worker's."""

from __future__ import annotations

import pytest
import torch

from aa_engine.cluster.window_parallel import TrafficLog, split_windows, step_traffic, window_parallel_pipeline
from aa_engine.config import GenerationConfig
from aa_engine.pipeline import AnimateAnyonePipeline
from aa_engine.pipeline.context_windows import context_windows


@pytest.mark.parametrize("windows,workers,batch", [(1, 1, 1), (5, 2, 1), (7, 3, 1), (7, 3, 2), (2, 4, 1), (9, 2, 4), (0, 2, 1)])
def test_split_windows_is_contiguous_balanced_and_aligned_to_batches(windows, workers, batch):
    shares = split_windows(windows, workers, batch)
    assert len(shares) == workers
    assert [i for s in shares for i in s] == list(range(windows))  # every window once, in order
    assert all(s.start % batch == 0 for s in shares if len(s))  # a model batch is never cut in two
    batches = [-(-len(s) // batch) for s in shares]
    assert max(batches) - min(batches) <= 1
    assert shares[0] == max(shares, key=len) or len(shares[0]) >= max(len(s) for s in shares) - batch


def test_split_windows_refuses_nonsense():
    with pytest.raises(ValueError):
        split_windows(4, 0)


def test_step_traffic_is_the_latents_out_and_the_predictions_back():
    shape = (1, 4, 24, 96, 64)  # 24 frames at 512x768
    windows = context_windows(24, 12, 4)
    shares = split_windows(len(windows), 2)
    traffic = step_traffic(shape, windows, shares)
    per_frame = 4 * 96 * 64 * 4
    assert traffic["to_helpers"] == 24 * per_frame  # about 2.4 MB: the design's "1.5 MB each way" order
    assert traffic["from_helpers"] == sum(len(windows[i]) for i in shares[1]) * per_frame


class InProcessHelpers:
    """A transport whose helpers are other pipelines in this process (the Ray and torch.distributed
    transports carry the same tensors); `fail` makes a helper fail at every step."""

    def __init__(self, pipes, prepared, config, fail=()):
        self.workers = 1 + len(pipes)
        self.pipes = pipes
        self.config = config
        self.prepared = [prepared] * len(pipes)  # each helper's own reference pass, done once per job
        self.fail = set(fail)
        self.calls = 0

    def start(self, latents, t, shares):
        self.calls += 1
        return [None if k + 1 in self.fail else list(p.predict_windows(pr, latents.clone(), t, shares[k + 1], self.config))
                for k, (p, pr) in enumerate(zip(self.pipes, self.prepared))]

    def gather(self, handle):
        return handle

    def decode_start(self, latents, parts):
        n = latents.shape[2]
        return [None if k + 1 in self.fail else
                list(p.decode(latents, self.config, set(range(n)) - {i for g in parts[k + 1] for i in g}))
                for k, p in enumerate(self.pipes)]

    def decode_gather(self, handle):
        return handle


@pytest.fixture(scope="module")
def shot():
    from pathlib import Path

    from PIL import Image

    from aa_engine.weights import load_model

    examples = Path(__file__).resolve().parents[2] / "examples"
    maps = [Image.open(p).convert("RGB") for p in sorted((examples / "poses").glob("*.png"))]
    model, _ = load_model("random-tiny")
    pipe = AnimateAnyonePipeline(model, "cpu")
    config = GenerationConfig(width=32, height=32, steps=2, context_frames=4, context_overlap=1, guidance=2.0).sized_for(model.config)
    reference = Image.open(examples / "reference.png").convert("RGB")
    poses = [maps[i % len(maps)] for i in range(10)]  # 3 windows
    prepared = pipe.prepare(reference, poses, config)
    single = pipe.denoise(prepared, pipe.initial_latents(len(poses), config), config)
    return pipe, prepared, poses, config, single


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_window_parallel_latents_equal_one_worker_bit_for_bit(shot, workers):
    pipe, prepared, poses, config, single = shot
    helpers = InProcessHelpers([pipe] * (workers - 1), prepared, config)
    log = TrafficLog()
    lead = window_parallel_pipeline(pipe, helpers, log)
    latents = lead.denoise(prepared, pipe.initial_latents(len(poses), config), config)
    assert helpers.calls == config.steps
    assert (latents - single).abs().max().item() == 0.0  # measured: 0.0, the same sum in the same order
    assert torch.equal(latents, single)
    assert log.steps == config.steps and log.bytes_to_helpers == config.steps * (workers - 1) * single.numel() * 4
    assert lead.model is pipe.model  # a shallow copy: the weights are not duplicated


@pytest.mark.slow
@pytest.mark.parametrize("fail", [(), (1,)])
def test_helpers_decode_the_same_pixels_in_order(shot, fail):
    pipe, prepared, poses, config, single = shot
    config = type(config)(**{**config.__dict__, "decode_batch": 3})  # 10 frames: groups of 3, 3, 3, 1
    expected = list(pipe.decode(single, config))
    log = TrafficLog()
    lead = window_parallel_pipeline(pipe, InProcessHelpers([pipe], prepared, config, fail=fail), log)
    got = list(lead.decode(single, config, skip={0, 1}))  # frames 1 and 2 already on disk
    assert [i for i, _ in got] == list(range(2, 10))
    assert all((a == b).all() for (_, a), (_, b) in zip(got, expected[2:]))
    assert (log.decoded_by_helpers, log.fallback_frames) == ((0, 4) if fail else (4, 0))  # the last two groups: 4 frames


@pytest.mark.slow
def test_a_failed_helper_s_windows_are_computed_by_the_lead(shot):
    pipe, prepared, poses, config, single = shot
    helpers = InProcessHelpers([pipe], prepared, config, fail={1})
    log = TrafficLog()
    lead = window_parallel_pipeline(pipe, helpers, log)
    latents = lead.denoise(prepared, pipe.initial_latents(len(poses), config), config)
    assert torch.equal(latents, single)
    assert log.fallback_windows == config.steps * len(split_windows(3, 2)[1])
