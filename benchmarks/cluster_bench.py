"""Scale-out benchmark on a local Ray cluster (issue 9, docs/cluster.md).

    .venv/engine/bin/python benchmarks/cluster_bench.py [--jobs 6] [--frames 96] [--size 64] [--steps 4]

Starts a private Ray instance on loopback with as many CPUs as workers (token authentication on,
a random token), pools of warm EngineWorkers (random-tiny weights unless --weights, one torch thread
each), and measures:

1. throughput: --jobs short jobs submitted at once, on 1 worker and on 2 workers (jobs/min);
2. one long shot (--frames frames): 1 worker, then 2 workers splitting each step's context windows,
   with the bytes moved per step, and checks the frames are byte-identical.

Worker start-up (Ray, torch import, weights) is not timed: the pool is warm, as a gateway's is. The
machine's load average is printed before and after: on shared cores the numbers move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLES = ROOT / "examples"


def make_spec(out: Path, job_id: str, frames: int, size: int, steps: int, context: int, overlap: int):
    from aa_engine.config import GenerationConfig
    from aa_engine.jobs import JobSpec

    poses = sorted((EXAMPLES / "poses").glob("*.png"))
    config = GenerationConfig(width=size, height=size, steps=steps, context_frames=context, context_overlap=overlap, decode_batch=4)
    return JobSpec(job_id, EXAMPLES / "reference.png", [poses[i % len(poses)] for i in range(frames)], out, config, video=False)


def run_all(pool, specs, emit=lambda *a, **k: None) -> float:
    """Run the jobs at once (one thread each, as the queue's dispatchers do); seconds for all."""
    errors = []

    def one(spec):
        try:
            pool.run(spec, emit, lambda: False)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def new_pool(ray, workers: int, **kwargs):
    """A pool of `workers` workers, once the previous pool's actors have given their CPUs back."""
    from aa_engine.cluster.pool import RayExecutor

    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    pool = RayExecutor(None, max_workers=workers, threads=1, **kwargs)
    assert len(pool.workers()) == workers, f"{len(pool.workers())} workers started, not {workers}"
    return pool


def cpu_seconds(pool) -> float:
    """CPU seconds the pool's worker processes have used so far (they run on this machine)."""
    total = 0.0
    for worker in pool.workers():
        try:
            fields = Path(f"/proc/{worker.info['pid']}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        except (OSError, KeyError, IndexError, ValueError):
            pass
    return total


def frames_of(folder: Path, count: int) -> list[bytes]:
    return [(folder / f"frame_{i:05d}.png").read_bytes() for i in range(1, count + 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random-tiny")
    parser.add_argument("--jobs", type=int, default=6, help="short jobs for the throughput test (default 6)")
    parser.add_argument("--job-frames", type=int, default=16, help="frames of each short job (default 16)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the long shot (default 96)")
    parser.add_argument("--size", type=int, default=64, help="width and height (default 64, random-tiny's native size)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--context", type=int, default=16, help="context_frames (default 16)")
    parser.add_argument("--overlap", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    os.environ.update({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)})
    import ray
    import torch

    from aa_engine.cluster.window_parallel import split_windows, window_batch
    from aa_engine.pipeline.context_windows import context_windows

    work = Path(tempfile.mkdtemp(prefix="aa-cluster-bench-"))
    results: dict = {"cores": os.cpu_count(), "torch_threads_per_worker": 1, "weights": args.weights, "load_before": os.getloadavg()}
    print(f"machine: {os.cpu_count()} cores, load average {results['load_before'][0]:.2f} (1 min) before; torch {torch.__version__}; "
          f"ray {ray.__version__}", flush=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             object_store_memory=200 * 2**20)
    try:
        # -- 1. throughput ------------------------------------------------------------------------
        for workers in (1, 2):
            pool = new_pool(ray, workers, weights=args.weights, device="cpu", work_root=work)
            try:
                pool.run(make_spec(work / f"warm{workers}", "warm", 4, args.size, 1, args.context, args.overlap),
                         lambda *a, **k: None, lambda: False)
                specs = [make_spec(work / f"t{workers}-{n}", f"t{n}", args.job_frames, args.size, args.steps, args.context, args.overlap)
                         for n in range(args.jobs)]
                cpu = cpu_seconds(pool)
                seconds = run_all(pool, specs)
                cores = (cpu_seconds(pool) - cpu) / seconds
            finally:
                pool.close()
            rate = args.jobs / seconds * 60
            results[f"throughput_{workers}"] = {"jobs": args.jobs, "seconds": round(seconds, 2), "jobs_per_min": round(rate, 2),
                                                "worker_cores_used": round(cores, 2)}
            print(f"throughput, {workers} worker{'s' if workers > 1 else ''}: {args.jobs} jobs ({args.job_frames} frames, {args.size}x{args.size}, "
                  f"{args.steps} steps) in {seconds:.1f} s = {rate:.1f} jobs/min; the workers got {cores:.2f} cores of CPU", flush=True)
        speedup = results["throughput_2"]["jobs_per_min"] / results["throughput_1"]["jobs_per_min"]
        results["throughput_speedup"] = round(speedup, 2)
        # Per CPU second the workers got: what the pool itself costs, whatever else runs on the machine.
        per_core = [results[f"throughput_{w}"]["jobs_per_min"] / max(1e-9, results[f"throughput_{w}"]["worker_cores_used"]) for w in (1, 2)]
        results["throughput_efficiency_per_core"] = round(per_core[1] / per_core[0], 2)
        print(f"throughput speed-up on 2 workers: {speedup:.2f}x; per core of CPU the workers got: {per_core[0]:.1f} vs "
              f"{per_core[1]:.1f} jobs/min ({per_core[1] / per_core[0]:.0%})", flush=True)

        # -- 2. one long shot -----------------------------------------------------------------------
        pool = new_pool(ray, 2, weights=args.weights, device="cpu", work_root=work)
        try:
            pool.run(make_spec(work / "warm-long", "warm", 4, args.size, 1, args.context, args.overlap), lambda *a, **k: None, lambda: False)
            times, phases = {}, {}
            for workers in (1, 2):
                pool.window_workers = workers
                spec = make_spec(work / f"long{workers}", "long", args.frames, args.size, args.steps, args.context, args.overlap)
                stages: dict[str, float] = {}  # when each stage began (the worker's elapsed_s)

                def emit(event, **fields):
                    if event == "progress":
                        stages.setdefault(fields["stage"], fields["elapsed_s"])

                cpu = cpu_seconds(pool)
                times[workers] = run_all(pool, [spec], emit)
                cores = (cpu_seconds(pool) - cpu) / times[workers]
                record = pool.record(spec)
                split = {"reference": round(stages["denoise"], 2), "denoise": round(stages["decode"] - stages["denoise"], 2),
                         "decode": round(times[workers] - stages["decode"], 2)}
                phases[workers] = {**split, "worker_cores_used": round(cores, 2)}
                print(f"long shot, {args.frames} frames, {workers} worker{'s' if workers > 1 else ''}"
                      f"{' window-parallel' if workers > 1 else ''}: {times[workers]:.1f} s (prepare + reference pass "
                      f"{split['reference']} s, denoising {split['denoise']} s, decoding {split['decode']} s); "
                      f"the workers got {cores:.2f} cores of CPU", flush=True)
            traffic = record.traffic
            windows = context_windows(args.frames, args.context, args.overlap)
            same = frames_of(work / "long1", args.frames) == frames_of(work / "long2", args.frames)
            speedup = times[1] / times[2]
            results["long_shot"] = {"frames": args.frames, "windows": len(windows),
                                    "shares": [len(s) for s in split_windows(len(windows), 2, window_batch(spec.config))],
                                    "seconds_1": round(times[1], 2), "seconds_2": round(times[2], 2), "speedup": round(speedup, 2),
                                    "phases_1": phases[1], "phases_2": phases[2],
                                    "denoise_speedup": round(phases[1]["denoise"] / phases[2]["denoise"], 2),
                                    "worker_cores_used": [phases[1]["worker_cores_used"], phases[2]["worker_cores_used"]],
                                    "bytes_per_step": traffic["bytes_per_step"], "bytes_to_helper_per_step": traffic["bytes_to_helpers"] // traffic["steps"],
                                    "bytes_from_helper_per_step": traffic["bytes_from_helpers"] // traffic["steps"], "byte_identical": same}
            cpu_1, cpu_2 = times[1] * phases[1]["worker_cores_used"], times[2] * phases[2]["worker_cores_used"]
            serial = phases[1]["reference"] / times[1]  # every worker runs the reference pass: it does not shrink; steps and decode are split
            results["long_shot"].update({"cpu_seconds_1": round(cpu_1, 2), "cpu_seconds_2": round(cpu_2, 2),
                                         "serial_fraction_1": round(serial, 3), "amdahl_bound_2": round(1 / (serial + (1 - serial) / 2), 2)})
            print(f"denoising speed-up on 2 workers: {results['long_shot']['denoise_speedup']:.2f}x; CPU seconds of the workers: "
                  f"{cpu_1:.1f} (1 worker) vs {cpu_2:.1f} (2 workers); the reference pass (run by every worker) is {serial:.0%} of the 1-worker time: "
                  f"with 2 idle cores the bound is {results['long_shot']['amdahl_bound_2']:.2f}x", flush=True)
            print(f"long shot speed-up on 2 workers: {speedup:.2f}x; {len(windows)} windows split "
                  f"{results['long_shot']['shares']}; moved per step: {traffic['bytes_to_helpers'] // traffic['steps']} B latents out + "
                  f"{traffic['bytes_from_helpers'] // traffic['steps']} B predictions back = {traffic['bytes_per_step']} B; "
                  f"frames byte-identical: {same}", flush=True)
        finally:
            pool.close()
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    print(f"load average {results['load_after'][0]:.2f} (1 min) after", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
