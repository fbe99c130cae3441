"""Where a queued job runs: the seam between the remote engine's queue and the model.

The queue (aa_engine/job_queue.py) hands each job to an `Executor` and knows nothing else about
the model. `InProcessExecutor` runs jobs one at a time on the pipeline loaded in this process (what
`serve` does today). A worker pool (e.g. Ray actors, one per GPU) is another Executor with more
`slots`: the queue then runs that many jobs at once, each on a dispatcher thread blocked in `run`.

The contract of `run`: call `emit(event, **fields)` with the job's events in the order `run_job`
sends them (accepted, progress, frame with the frame's `path`, ...), poll `should_cancel()` at
least once per denoising step and raise aa_engine.errors.Cancelled when it is true, write the
frames into `spec.output`, and return the `done` fields. Raise EngineError subclasses for what the
user can fix; anything else is reported as an internal error and the engine keeps serving.
"""

from __future__ import annotations

from typing import Callable, Protocol

from aa_engine.jobs import Emit, JobSpec


class Executor(Protocol):
    slots: int  # jobs that may run at the same time

    def describe(self) -> dict:
        """The `hello` fields that describe the model: device, dtype, weights, model, torch,
        native_size, max_context_frames."""

    def run(self, spec: JobSpec, emit: Emit, should_cancel: Callable[[], bool]) -> dict:
        """Run one job to its end; returns the `done` fields (frames, output, video, elapsed_s)."""

    def close(self) -> None:
        """Release the workers (the process is ending)."""


def hello_fields(pipe, weights) -> dict:
    """What `hello` says about a loaded pipeline (the same for stdio and the remote engine)."""
    import torch

    config = pipe.model.config
    return {
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "weights": weights.to_dict(),
        "model": config.name,
        "torch": torch.__version__,
        "native_size": list(config.native_size or (512, 768)),
        "max_context_frames": config.motion_module.max_frames,
    }


class InProcessExecutor:
    """Jobs run one at a time on the pipeline this process loaded (weights load once)."""

    slots = 1

    def __init__(self, pipe, weights):
        self.pipe = pipe
        self.weights = weights

    def describe(self) -> dict:
        return hello_fields(self.pipe, self.weights)

    def run(self, spec: JobSpec, emit: Emit, should_cancel: Callable[[], bool]) -> dict:
        from aa_engine.jobs import run_job

        return run_job(self.pipe, self.weights.identity, spec, emit, should_cancel)

    def close(self) -> None:
        pass
