"""`python -m aa_engine` (also the `aa-engine` console script): animate, serve, info, train, evaluate."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from aa_engine import __version__
from aa_engine.config import GenerationConfig
from aa_contract import settings
from aa_engine.errors import EngineError, UserError

log = logging.getLogger("aa_engine")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, help="weights folder (ours or a Moore-AnimateAnyone release), or 'random-tiny'; default: the shipped default model")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    parser.add_argument("--dtype", default="auto", help="auto, fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on GPU)")




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
                       help="serve the same protocol over TCP instead of stdin/stdout (no authentication: trusted networks only)")

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
    from aa_engine.weights import load_model

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    model, info = load_model(args.weights)
    for note in info.notes:
        log.warning("weights %s: %s", info.source, note)
    return AnimateAnyonePipeline(model, device, dtype), info


def cmd_animate(args) -> int:
    from tqdm import tqdm

    from aa_engine.jobs import JobSpec, run_job

    from aa_contract.keypoints import read_track

    config = GenerationConfig(**settings.validate(settings.from_arguments(args)))  # bad values: before loading weights
    poses = read_track(args.keypoints) if args.keypoints else args.poses
    pipe, info = _load_pipeline(args)
    config = config.sized_for(pipe.model.config)
    spec = JobSpec("animate", args.reference, poses, args.out, config, video=not args.no_video)
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

    try:
        result = run_job(pipe, info.identity, spec, emit)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"{result['frames']} frames in {result['output']}" + (f", video {result['video']}" if result["video"] else ""))
    return 0


def cmd_serve(args) -> int:
    from aa_engine.protocol.session import EngineSession
    from aa_engine.protocol.stdio import make_sender, protocol_stdout, serve_stdio

    if args.listen:
        from aa_engine.protocol.tcp import serve_tcp

        host, _, port = args.listen.rpartition(":")
        if not port.isdigit():
            raise EngineError(f"--listen needs HOST:PORT (got {args.listen!r}).", "Example: --listen 127.0.0.1:7860", code="bad_request")
        pipe, info = _load_pipeline(args)
        return serve_tcp(pipe, info, host or "127.0.0.1", int(port), ready=lambda p: print(f"listening on {host or '127.0.0.1'}:{p}", file=sys.stderr, flush=True))

    send = make_sender(protocol_stdout())
    try:
        pipe, info = _load_pipeline(args)
    except EngineError as exc:
        send({"type": "error", "id": None, **exc.to_dict()})
        return 2
    return serve_stdio(EngineSession(pipe, info, send))


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


if __name__ == "__main__":
    raise SystemExit(main())
