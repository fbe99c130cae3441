"""One shot over the GPUs of one machine without Ray: `aa_engine animate` under torchrun.

    torchrun --standalone --nproc-per-node 4 -m aa_engine animate --reference ref.png --keypoints k.json --out shot/

Every rank loads the weights on its own device (rank r: cuda:LOCAL_RANK) and runs the reference
pass once. Rank 0 runs the job as `animate` always does (checks, checkpoints, decoding, the files);
its pipeline's `predict_windows` splits each step's windows with the other ranks through the same
lead and the same `split_windows` as the Ray pool (aa_engine/cluster/window_parallel.py). The other
ranks serve their share of every step until rank 0 says the denoising is over. The frames are the
single-process frames, byte for byte, on the same device type and dtype.

Per step, rank 0 broadcasts a header (go on/stop, the timestep) and the latents; rank r sends back
its windows' predictions (point to point). gloo on CPUs, nccl on GPUs.
"""

from __future__ import annotations

import logging
import os

import torch

from aa_engine.cluster.window_parallel import split_windows, window_batch
from aa_engine.pipeline.context_windows import context_windows

log = logging.getLogger(__name__)


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def rank_device(device: str) -> str:
    """The device a rank uses: cuda:LOCAL_RANK when the run is on GPUs."""
    _, size, local = world()
    if size > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local}"
    return device


def init(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # AA_DIST_INIT_METHOD (e.g. file:///shared/rendezvous): meet through a file instead of
        # torchrun's TCP store, which listens on every interface (the tests use it: loopback only).
        method = os.environ.get("AA_DIST_INIT_METHOD")
        if method:
            rank, size, _ = world()
            dist.init_process_group(backend, init_method=method, rank=rank, world_size=size)
        else:
            dist.init_process_group(backend)
    if device.type == "cuda":
        torch.cuda.set_device(device)


def _shares(num_frames: int, config, size: int) -> list[list[list[int]]]:
    windows = context_windows(num_frames, config.context_frames, config.context_overlap, config.context_loop)
    return [[windows[i] for i in share] for share in split_windows(len(windows), size, window_batch(config))]


class DistributedHelpers:
    """The window-parallel transport on rank 0 (ShareTransport in window_parallel.py)."""

    def __init__(self, pipe, latents_shape: tuple[int, ...]):
        _, self.workers, _ = world()
        self.device = pipe.device
        self.dtype = pipe.dtype
        self.shape = latents_shape

    def _header(self, go: int, t: int) -> None:
        import torch.distributed as dist

        dist.broadcast(torch.tensor([go, t], dtype=torch.int64, device=self.device), 0)

    def start(self, latents, t, shares):
        import torch.distributed as dist

        self._header(1, int(t))
        dist.broadcast(latents.to(self.device, torch.float32).contiguous(), 0)
        return shares

    def gather(self, shares):
        import torch.distributed as dist

        out = []
        b, c, _, h, w = self.shape
        for rank in range(1, self.workers):
            frames = shares[rank]
            if not frames:
                out.append([])
                continue
            got = torch.empty((b, c, sum(len(f) for f in frames), h, w), dtype=self.dtype, device=self.device)
            dist.recv(got, rank)
            out.append(list(got.split([len(f) for f in frames], dim=2)))
        return out

    def stop(self) -> None:
        self._header(0, 0)


def serve_windows(pipe, prepared, config, num_frames: int) -> int:
    """Ranks 1..K-1: compute this rank's share of every step's windows until rank 0 stops.
    Returns the number of steps served."""
    import torch.distributed as dist

    rank, size, _ = world()
    mine = _shares(num_frames, config, size)[rank]
    header = torch.zeros(2, dtype=torch.int64, device=pipe.device)
    latents = torch.empty((1, pipe.model.vae.config.latent_channels, num_frames, config.height // 8, config.width // 8),
                          dtype=torch.float32, device=pipe.device)
    steps = 0
    while True:
        dist.broadcast(header, 0)
        if int(header[0]) == 0:
            return steps
        dist.broadcast(latents, 0)
        t = torch.tensor(int(header[1]), dtype=torch.int64)
        if mine:
            predictions = list(pipe.predict_windows(prepared, latents, t, mine, config))
            dist.send(torch.cat(predictions, dim=2).contiguous(), 0)
        steps += 1


def join(pipe, spec):
    """Join the torchrun group for `animate`. Rank 0 gets (its window-parallel pipeline, the
    transport; call transport.stop() when the job ends, however it ends); the other ranks serve
    their windows here until rank 0 stops, and get (None, None)."""
    from aa_engine.cluster.window_parallel import window_parallel_pipeline
    from aa_engine.jobs import load_poses, load_reference

    rank, size, _ = world()
    init(pipe.device)
    config = spec.config.sized_for(pipe.model.config)
    poses, _ = load_poses(spec.poses, (config.width, config.height))
    if rank == 0:
        shape = (1, pipe.model.vae.config.latent_channels, len(poses), config.height // 8, config.width // 8)
        transport = DistributedHelpers(pipe, shape)
        log.info("rank 0 of %d: each step's context windows are split over the ranks", size)
        return window_parallel_pipeline(pipe, transport), transport
    prepared = pipe.prepare(load_reference(spec.reference), poses, config)  # this rank's reference pass, once
    steps = serve_windows(pipe, prepared, config, len(poses))
    log.info("rank %d served %d denoising steps", rank, steps)
    return None, None
