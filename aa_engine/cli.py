"""`python -m aa_engine` (also the `aa-engine` console script): animate, serve, info, train, evaluate."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from aa_engine import __version__
from aa_engine.config import GenerationConfig
from aa_contract import settings
from aa_engine.errors import Cancelled, EngineError, UserError, internal_error

log = logging.getLogger("aa_engine")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, help="weights folder (ours or a Moore-AnimateAnyone release), or 'random-tiny'; default: the shipped default model")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)")
    memory = parser.add_argument_group("device memory and speed (docs/performance.md; none changes the frames beyond float rounding)")
    memory.add_argument("--offload-reference", action="store_true",
                        help="ReferenceNet, CLIP and the VAE encoder leave the device once the reference is encoded")
    memory.add_argument("--cfg-sequential", action="store_true", help="run the two halves of guidance one after the other, not as one batch")
    memory.add_argument("--vae-tiling", action="store_true", help="decode each frame in overlapping tiles (may differ by a few levels at seams)")
    memory.add_argument("--compile", action="store_true", help="torch.compile the UNets (slow first call; also AA_ENGINE_COMPILE=1)")




def _add_remote_arguments(serve: argparse.ArgumentParser) -> None:
    """The remote engine's flags (with --listen; aa_engine/protocol/server.py, docs/remote.md)."""
    remote = serve.add_argument_group("remote engine (with --listen)")
    remote.add_argument("--work-root", type=Path, default=None,
                        help="folder for remote jobs' inputs and frames, one folder per job (default: ~/.cache/aa_engine/work)")
    remote.add_argument("--token-file", type=Path, default=None,
                        help="file holding the token clients must present; made with a random token (mode 0600) if missing "
                             "(default: WORK_ROOT/token)")
    remote.add_argument("--no-token", action="store_true", help="accept clients without a token (loopback addresses only)")
    remote.add_argument("--tls-cert", default=None, help="PEM certificate: serve over TLS")
    remote.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert (if not in the same file)")
    remote.add_argument("--max-connections", type=int, default=256, help="open connections at once (default 256)")
    remote.add_argument("--max-clients", type=int, default=64, help="authenticated clients at once (default 64)")
    remote.add_argument("--max-queued", type=int, default=100, help="queued and running jobs, all clients (default 100)")
    remote.add_argument("--max-queued-per-client", type=int, default=20, help="queued and running jobs of one client (default 20)")
    remote.add_argument("--max-line-mb", type=float, default=64, help="largest message, uploads included, in MB (default 64)")
    remote.add_argument("--keep-hours", type=float, default=72,
                        help="finished jobs nobody collected are removed after this many hours (default 72)")
    remote.add_argument("--auth-timeout", type=float, default=10, help="seconds a new connection has to authenticate (default 10)")
    remote.add_argument("--allow-remote-shutdown", action="store_true", help="let a client stop the engine with `shutdown`")
    cluster = serve.add_argument_group("worker pool on a Ray cluster (with --listen; docs/cluster.md)")
    cluster.add_argument("--ray", metavar="ADDRESS", default=None,
                         help="run jobs on warm workers of a Ray cluster, one per GPU (per CPU without GPUs): 'auto' (the cluster "
                              "`ray start` made on this machine), HEAD_IP:6379, or 'local' (a private one-machine cluster); this "
                              "process then loads no model. The work root must be on storage every node mounts at the same path")
    cluster.add_argument("--ray-max-failures", type=int, default=3,
                         help="a job that loses this many workers (a crashed process, a lost node) fails with `worker_lost`; "
                              "before that it resumes on another worker from its checkpoint (default 3)")
    cluster.add_argument("--ray-max-workers", type=int, default=None, help="at most this many workers (default: as many as the cluster has GPUs/CPUs)")
    cluster.add_argument("--window-workers", type=int, default=1,
                         help="split each denoising step of a long shot over up to this many idle workers (same frames, sooner; default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aa_engine", description="Animate Anyone engine: reference image + skeleton maps -> video.")
    parser.add_argument("--version", action="version", version=f"aa_engine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    animate = commands.add_parser("animate", help="animate one reference image with a sequence of pose maps")
    animate.add_argument("--reference", required=True, type=Path, help="reference image of the character (PNG/JPG)")
    poses = animate.add_mutually_exclusive_group(required=True)
    poses.add_argument("--poses", type=Path, help="folder of skeleton maps (sorted by name) or a video")
    poses.add_argument("--keypoints", type=Path, help="a keypoint track (aa-keypoints/1, e.g. the add-on's keypoints.json): the engine draws the maps")
    animate.add_argument("--out", required=True, type=Path, help="output folder for frame_00001.png ... and video.mp4")
    animate.add_argument("--no-video", action="store_true", help="write the PNG frames only")
    _add_model_arguments(animate)
    settings.add_arguments(animate)

    serve = commands.add_parser("serve", help="JSON-lines protocol on stdin/stdout (docs/protocol.md)")
    _add_model_arguments(serve)
    serve.add_argument("--listen", metavar="HOST:PORT", default=None,
                       help="be a remote engine on this address (e.g. 127.0.0.1:7860, 0.0.0.0:7860, [::1]:7860): many clients, "
                            "a token, a queue, uploads instead of paths (docs/remote.md); default: stdin/stdout")
    _add_remote_arguments(serve)

    info = commands.add_parser("info", help="what a weights folder holds, what is missing, what the engine would run on")
    _add_model_arguments(info)

    for name, module in (("train", "aa_engine.training"), ("evaluate", "aa_engine.evaluation")):
        sub = commands.add_parser(name, help=f"{name} (see docs/default_model.md)")
        hook = _optional(module, f"add_{name}_arguments")
        if hook is not None:
            hook(sub)
    return parser


def _optional(module: str, attribute: str):
    try:
        return getattr(importlib.import_module(module), attribute, None)
    except ImportError:
        return None


def _load_pipeline(args):
    from aa_engine.device import pick_device, pick_dtype
    from aa_engine.pipeline import AnimateAnyonePipeline
    from aa_engine.pipeline.pipeline import MemoryOptions
    from aa_engine.weights import load_model

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    model, info = load_model(args.weights)
    for note in info.notes:
        log.warning("weights %s: %s", info.source, note)
    memory = MemoryOptions(offload_reference=args.offload_reference, cfg_sequential=args.cfg_sequential, vae_tiling=args.vae_tiling)
    return AnimateAnyonePipeline(model, device, dtype, compile=args.compile or None, memory=memory), info


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM before a job could stop at a step's end; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """SIGINT/SIGTERM for a command that runs one job in the main thread: while the job runs, the
    first signal asks it to stop after its current step (frames and checkpoint kept); a second
    one, or one outside the job, stops at once (raises Interrupted). Frames and the checkpoint
    are written atomically, so even then nothing on disk is half-written."""

    def __init__(self):
        self.signum: int | None = None
        self.job_running = False
        self._previous: dict = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, _frame) -> None:
        if not self.job_running or self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after the current step "
              "(press Ctrl-C again to stop at once; the frames on disk are kept either way)", file=sys.stderr, flush=True)

    def should_cancel(self) -> bool:
        return self.signum is not None


def _interrupted(signum: int, out: Path) -> int:
    print(f"interrupted ({signal.Signals(signum).name}): the frames already in {out} are kept; "
          "rerun the same command to resume", file=sys.stderr)
    return 128 + signum


def cmd_animate(args) -> int:
    with StopOnSignal() as stop:
        try:
            return _animate(args, stop)
        except Interrupted as exc:
            return _interrupted(exc.signum, args.out)
        except Cancelled:
            return _interrupted(stop.signum or signal.SIGINT, args.out)


def _animate(args, stop: StopOnSignal) -> int:
    from tqdm import tqdm

    from aa_engine.jobs import JobSpec, run_job

    from aa_contract.keypoints import read_track

    config = GenerationConfig(**settings.validate(settings.from_arguments(args)))  # bad values: before loading weights
    poses = read_track(args.keypoints) if args.keypoints else args.poses
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun: one shot's windows over the ranks (docs/cluster.md)
    if launched:
        from aa_engine.cluster import distributed

        args.device = distributed.rank_device(args.device)
    pipe, info = _load_pipeline(args)
    config = config.sized_for(pipe.model.config)
    spec = JobSpec("animate", args.reference, poses, args.out, config, video=not args.no_video)
    ranks = None
    if launched:
        pipe, ranks = distributed.join(pipe, spec)
        if pipe is None:
            return 0  # a helper rank: it served its windows; rank 0 writes the frames
    bars: dict[str, tqdm] = {}

    def emit(event: str, **fields) -> None:
        if event == "accepted" and fields["resumed_frames"]:
            log.info("resuming: %d of %d frames already on disk", fields["resumed_frames"], fields["frames"])
        if event == "progress" and fields["stage"] in ("denoise", "decode"):
            stage = fields["stage"]
            bar = bars.get(stage)
            if bar is None:
                bar = bars[stage] = tqdm(total=fields["total"], desc=stage, unit="step" if stage == "denoise" else "frame", file=sys.stderr)
            bar.n = fields["step"]
            bar.refresh()

    stop.job_running = True
    try:
        result = run_job(pipe, info.identity, spec, emit, stop.should_cancel)
    finally:
        stop.job_running = False
        if ranks is not None:
            ranks.stop()
        for bar in bars.values():
            bar.close()
    print(f"{result['frames']} frames in {result['output']}" + (f", video {result['video']}" if result["video"] else ""))
    return 0


def cmd_serve(args) -> int:
    from aa_engine.protocol.session import EngineSession
    from aa_engine.protocol.stdio import make_sender, protocol_stdout, serve_stdio

    if args.listen:
        return _serve_remote(args)
    if args.ray:
        raise EngineError("--ray needs --listen: the worker pool serves the remote engine's clients.",
                          "Add --listen HOST:PORT (docs/cluster.md).", code="bad_request")

    send = make_sender(protocol_stdout())
    try:
        with StopOnSignal():  # while loading, a signal ends the engine at once
            pipe, info = _load_pipeline(args)
    except Interrupted as exc:
        log.info("%s while loading the weights: exiting", signal.Signals(exc.signum).name)
        return 0
    except UserError as exc:
        send({"type": "error", "id": None, **exc.to_dict()})
        return 2
    except Exception as exc:  # noqa: BLE001 - the client gets an error event, never a bare traceback
        send({"type": "error", "id": None, **internal_error(exc, log, "loading the weights").to_dict()})
        return 1
    return serve_stdio(EngineSession(pipe, info, send))


def _serve_remote(args) -> int:
    """`serve --listen`: check the address, token and TLS and bind first (a port in use fails at
    once), then load the weights and serve until interrupted."""
    from aa_engine.executor import InProcessExecutor
    from aa_engine.job_store import JobStore
    from aa_engine.protocol.server import EngineServer, ServerConfig, load_or_create_token, parse_listen

    host, port = parse_listen(args.listen)
    store = JobStore(args.work_root or Path.home() / ".cache" / "aa_engine" / "work")
    token = None
    if args.no_token:
        if args.token_file:
            raise EngineError("--no-token and --token-file contradict each other.", "Pass one of them.", code="bad_request")
    else:
        token_file = args.token_file or store.root / "token"
        token, created = load_or_create_token(token_file)
        print(f"token: {'a new random token was written to' if created else 'read from'} {token_file.expanduser()} "
              "(give it to the clients; keep it secret)", file=sys.stderr, flush=True)
    config = ServerConfig(host=host, port=port, token=token, tls_cert=args.tls_cert, tls_key=args.tls_key,
                          max_line_bytes=int(args.max_line_mb * 1024 * 1024), max_connections=args.max_connections,
                          max_clients=args.max_clients, max_queued=args.max_queued, max_queued_per_client=args.max_queued_per_client,
                          keep_s=args.keep_hours * 3600, auth_timeout=args.auth_timeout, allow_shutdown=args.allow_remote_shutdown)
    server = EngineServer(None, store, config)  # the executor comes once the weights are loaded
    bound_host, bound_port = server.bind()
    if args.ray:  # the gateway holds no model: jobs run on Ray actors (aa_engine/cluster/pool.py)
        from aa_engine.cluster.pool import RayExecutor

        server.executor = RayExecutor(args.ray, args.weights, args.device, args.dtype, work_root=store.root,
                                      max_workers=args.ray_max_workers, max_failures=args.ray_max_failures,
                                      window_workers=args.window_workers)
        print(f"ray: {server.executor.slots} workers ({server.executor.describe()['device']})", file=sys.stderr, flush=True)
    else:
        pipe, info = _load_pipeline(args)
        server.executor = InProcessExecutor(pipe, info)
    server.queue.executor = server.executor
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"listening on {shown}:{bound_port} ({'TLS' if config.tls_cert else 'no TLS'}, "
          f"{'token required' if token else 'no token'}, work root {store.root})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping: running jobs are cancelled; their frames and checkpoints stay in the work root", file=sys.stderr, flush=True)
        server.stop()
    # Connection threads may still sit in the kernel (idle clients): end without Python's
    # finalisation, which can abort in torch's thread pool with hundreds of such threads.
    # Everything on disk is already complete (atomic writes).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_info(args) -> int:
    import torch

    from aa_engine.device import pick_device, pick_dtype
    from aa_engine.weights import RANDOM_TINY, load_model, moore_missing, moore_root, parameter_counts, resolve_spec

    spec = resolve_spec(args.weights)
    print(f"weights:  {spec}")
    if spec != RANDOM_TINY:
        folder = Path(spec)
        root = moore_root(folder) if folder.is_dir() else None
        if root is not None:
            missing = moore_missing(root)
            print(f"layout:   Moore-AnimateAnyone release at {root}")
            print("missing:  " + (", ".join(missing) if missing else "nothing"))
        elif folder.is_dir():
            print("layout:   " + ("our checkpoint (config.json + model.safetensors)" if (folder / "config.json").is_file() else "unknown"))
            for path in sorted(folder.iterdir()):
                print(f"          {path.name}")
    model, info = load_model(spec)
    print(f"model:    {model.config.name} ({info.kind})")
    for part, count in parameter_counts(model).items():
        label = "  of which motion modules" if part == "motion_modules" else f"  {part}"
        print(f"{label:28s} {count / 1e6:8.2f} M parameters")
    device = pick_device(args.device)
    print(f"device:   {device} ({pick_dtype(args.dtype, device)}); torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    return 0


class _TracebackOnlyVerbose:
    """A logger stand-in for internal_error: the traceback is printed only with -v."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def error(self, fmt: str, *args) -> None:
        if self.verbose:
            log.error(fmt, *args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    commands = {"animate": cmd_animate, "serve": cmd_serve, "info": cmd_info}
    try:
        if args.command in commands:
            return commands[args.command](args)
        module = "aa_engine.training" if args.command == "train" else "aa_engine.evaluation"
        runner = _optional(module, f"run_{args.command}")
        if runner is None:
            print(f"error: `{args.command}` is not available in this installation ({module} is missing).", file=sys.stderr)
            return 2
        return int(runner(args) or 0)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: frames already written are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: two readable lines, the traceback in the log
        error = internal_error(exc, _TracebackOnlyVerbose(args.verbose), f"`{args.command}`")
        print(f"error: {error.message}", file=sys.stderr)
        print("hint: this is a bug; rerun with -v for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
