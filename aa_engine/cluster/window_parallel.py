"""One shot on several workers: each denoising step's context windows split over K workers.

Given the latents at step t the context windows are independent: each worker computes the guided
noise predictions of its share of the windows (`AnimateAnyonePipeline.predict_windows`), the lead
worker gathers them and the pipeline's own `denoise` averages them in window order. The average,
the scheduler step, the checkpoint and the decode stay where they are (one scheduler, in the
pipeline), so the frames are bit-identical to a single worker's on the same device and dtype: every
window's prediction is the same tensor whoever computed it, and the sum is taken in the same order.

After the last step the helpers also decode: the frames are cut into the pipeline's fixed
`decode_batch` groups, the helpers decode contiguous runs of them and send the pixels back, and the
lead writes every frame in order (the same groups decoded anywhere give the same pixels).

Two transports share this split and this lead (the torch.distributed one splits only the steps):
- Ray actors (aa_engine/cluster/worker.py: helpers of a pool worker, `serve --ray`);
- torch.distributed ranks on one multi-GPU box (aa_engine/cluster/distributed.py).

The traffic per step is the step's latents out to each helper and their windows' predictions back
(`step_traffic`), never the model: each helper loads the weights once and runs the reference pass
once per job.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch


def split_windows(num_windows: int, workers: int, batch: int = 1) -> list[range]:
    """Contiguous shares of window indices 0..num_windows-1, one per worker, in worker order.

    Shares differ by at most one batch of `batch` windows, and every boundary falls on a multiple
    of `batch`, so a pipeline that runs `batch` windows per model call batches each window exactly
    as a single worker would (a different batch can change the floating-point result). The lead
    (share 0) gets the remainder; workers beyond the number of batches get empty shares.
    E.g. split_windows(5, 2) -> [range(0, 3), range(3, 5)].
    """
    if num_windows < 0 or workers < 1 or batch < 1:
        raise ValueError(f"split_windows({num_windows}, {workers}, {batch}): need num_windows >= 0, workers >= 1, batch >= 1")
    batches = -(-num_windows // batch)
    base, extra = divmod(batches, workers)
    shares, start = [], 0
    for worker in range(workers):
        count = base + (1 if worker < extra else 0)
        stop = min(num_windows, start + count * batch)
        shares.append(range(start, stop))
        start = stop
    return shares


def step_traffic(latents_shape: tuple[int, ...], windows: list[list[int]], shares: list[range], bytes_per_value: int = 4) -> dict:
    """Bytes moved in one denoising step between the lead and its helpers (share 0 is the lead's):
    the latents out to each helper that has windows, and each window's prediction back."""
    b, c, _, h, w = latents_shape
    per_frame = b * c * h * w * bytes_per_value
    helpers = [s for s in shares[1:] if len(s)]
    out = len(helpers) * per_frame * latents_shape[2]
    back = sum(len(windows[i]) * per_frame for s in helpers for i in s)
    return {"to_helpers": out, "from_helpers": back, "total": out + back, "helpers": len(helpers)}


class ShareTransport(Protocol):
    """How the lead reaches its helpers (Ray actors or torch.distributed ranks)."""

    workers: int  # the lead and its helpers

    def start(self, latents: torch.Tensor, t: torch.Tensor, shares: list[list[list[int]]]) -> object:
        """Send the step's latents (1, 4, f, h, w) and each helper its windows' frame lists
        (`shares[k]` for helper k = 1..workers-1; shares[0] is the lead's and is not sent);
        return a handle for `gather`. Must not block on the helpers' work."""

    def gather(self, handle: object) -> list[list[torch.Tensor] | None]:
        """Each helper's predictions for its windows, in order (index k-1 for helper k); None for a
        helper that failed: the lead then computes those windows itself."""


@dataclass
class TrafficLog:
    """What window parallelism moved, for the benchmark and the logs."""

    steps: int = 0
    bytes_to_helpers: int = 0
    bytes_from_helpers: int = 0
    fallback_windows: int = 0  # windows the lead computed itself because a helper failed
    decoded_by_helpers: int = 0  # frames the helpers decoded (sent back as uint8 pixels)
    fallback_frames: int = 0  # frames the lead decoded itself because a helper failed
    per_step: list[dict] = field(default_factory=list)

    def add(self, traffic: dict) -> None:
        self.steps += 1
        self.bytes_to_helpers += traffic["to_helpers"]
        self.bytes_from_helpers += traffic["from_helpers"]
        self.per_step.append(traffic)

    def to_dict(self) -> dict:
        return {"steps": self.steps, "bytes_to_helpers": self.bytes_to_helpers, "bytes_from_helpers": self.bytes_from_helpers,
                "bytes_per_step": (self.bytes_to_helpers + self.bytes_from_helpers) // max(1, self.steps),
                "fallback_windows": self.fallback_windows, "decoded_by_helpers": self.decoded_by_helpers,
                "fallback_frames": self.fallback_frames}


def window_batch(config) -> int:
    """Windows per model call in the pipeline (1 unless the pipeline batches windows)."""
    return max(1, int(getattr(config, "context_batch", 1) or 1))


def window_parallel_pipeline(pipe, transport: ShareTransport, log: TrafficLog | None = None,
                             on_prepare: Callable[[], None] | None = None):
    """A shallow copy of `pipe` whose `predict_windows` splits each step's windows over the
    transport's workers (the lead computes share 0 itself, meanwhile the helpers compute theirs).
    The model, scheduler settings and everything else are the original pipeline's; `denoise`,
    `decode`, checkpoints and events run unchanged. `on_prepare` runs after the lead's reference
    pass (to wait for the helpers' own)."""
    lead = copy.copy(pipe)
    base_predict = pipe.predict_windows
    base_prepare = pipe.prepare

    def prepare(reference, poses, config):
        prepared = base_prepare(reference, poses, config)
        if on_prepare is not None:
            on_prepare()
        return prepared

    def predict_windows(prepared, latents, t, windows, config, should_cancel=None) -> Iterable[torch.Tensor]:
        shares = split_windows(len(windows), transport.workers, window_batch(config))
        frames = [[windows[i] for i in share] for share in shares]
        step_latents = latents.detach().to("cpu", torch.float32)
        handle = transport.start(step_latents, t, frames) if any(frames[1:]) else None
        own = list(base_predict(prepared, latents, t, frames[0], config, should_cancel))
        results: list[torch.Tensor] = own
        gathered = transport.gather(handle) if handle is not None else [[] for _ in frames[1:]]
        for k, got in enumerate(gathered, start=1):
            if got is None or len(got) != len(frames[k]):
                # A helper failed: compute its windows here (the same tensors, so the same frames).
                if log is not None:
                    log.fallback_windows += len(frames[k])
                got = list(base_predict(prepared, latents, t, frames[k], config, should_cancel))
            results.extend(got)
        if log is not None and handle is not None:
            sent = sum(1 for f in frames[1:] if f)
            back = sum(int(r.numel() * r.element_size()) for got in gathered if got for r in got)
            log.add({"to_helpers": sent * int(step_latents.numel() * step_latents.element_size()), "from_helpers": back, "helpers": sent})
        device = latents.device
        return [r.to(device) for r in results]

    base_decode = pipe.decode

    def decode(latents, config, skip=frozenset()):
        """The frames in order, as pipe.decode yields them; with a transport that can decode
        (`decode_start`/`decode_gather`), the helpers decode contiguous runs of the fixed
        decode_batch groups meanwhile (the same groups, so the same pixels)."""
        n = latents.shape[2]
        size = max(1, int(config.decode_batch))
        groups = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
        todo = [g for g in groups if not all(i in skip for i in g)]
        if not hasattr(transport, "decode_start") or transport.workers < 2 or len(todo) < 2:
            yield from base_decode(latents, config, skip)
            return
        parts = [[todo[i] for i in share] for share in split_windows(len(todo), transport.workers)]
        handle = transport.decode_start(latents.detach().to("cpu", torch.float32), parts)
        everything = set(range(n))

        def only(part):  # pipe.decode of these groups alone (the others skipped)
            return base_decode(latents, config, (everything - {i for g in part for i in g}) | set(skip))

        yield from only(parts[0])
        for k, got in enumerate(transport.decode_gather(handle), start=1):
            if got is None:  # the helper failed: decode its groups here
                if log is not None:
                    log.fallback_frames += sum(len(g) for g in parts[k])
                yield from only(parts[k])
                continue
            if log is not None:
                log.decoded_by_helpers += len(got)
            for index, image in got:
                if index not in skip:
                    yield index, image

    lead.prepare = prepare
    lead.predict_windows = predict_windows
    lead.decode = decode
    return lead
