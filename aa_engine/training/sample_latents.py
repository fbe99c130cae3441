"""The model's own final latents, for fitting the decoder to them (`train --stage decoder --sample-latents DIR`).

The denoising UNet does not hand the decoder the encoder's latents: its samples lack detail and
carry small errors the encoder never makes. A decoder trained only on encoder latents (plus noise)
draws those errors; a decoder polished for a high VAE ceiling draws them more sharply (docs/
default_model.md, fifth session). This samples training-split clips with the engine's pipeline, as
the demo does (a sampler preset), and keeps the final latents with the clip and frame they belong
to; the decoder stage then also learns to turn *them* into the true frames. Training-split
characters only, so the held-out evaluation stays held out.

    python -m aa_engine.training.sample_latents --weights runs/image/model --out runs/samples --clips 64 --frames 8 \\
        --data rich --preset fast

DIR/latents.safetensors  "latents" (n, c, h, w) scaled latents, "clips" (n,) train-split clip index,
                         "frames" (n,) frame index in that clip (the true frame is make_clip's, a pure
                         function of the index: nothing else is stored)
DIR/sample_latents.json  the settings: weights, size, data style, frames per clip, sampler, guidance
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from aa_engine.data.dataset import make_clip

LATENTS_FILE = "latents.safetensors"
SETTINGS_FILE = "sample_latents.json"
FIRST_CLIP = 20_000_000  # train-split clips no training batch of a realistic run reaches


@torch.no_grad()
def sample_clip_latents(model, clips: int, frames: int, width: int, height: int, data: str, sampling: dict, guidance: float,
                        seed: int = 42, device: str | torch.device = "cpu", first_clip: int = FIRST_CLIP) -> dict[str, torch.Tensor]:
    """Final latents of `clips` training-split clips sampled with the pipeline (seed + i for clip i)."""
    from PIL import Image

    from aa_engine.evaluation.generate import clip_config
    from aa_engine.pipeline import AnimateAnyonePipeline

    pipe = AnimateAnyonePipeline(model, device)
    latents, clip_ids, frame_ids = [], [], []
    for i in range(clips):
        clip = make_clip("train", first_clip + i, frames, width, height, data)
        config = clip_config(model, clip, guidance=guidance, seed=seed + i, **sampling)
        prepared = pipe.prepare(Image.fromarray(clip.reference), [Image.fromarray(p) for p in clip.poses], config)
        final = pipe.denoise(prepared, pipe.initial_latents(frames, config), config)  # (1, c, f, h, w)
        latents.append(final[0].permute(1, 0, 2, 3).float().cpu())
        clip_ids += [first_clip + i] * frames
        frame_ids += list(range(frames))
    return {"latents": torch.cat(latents).contiguous(), "clips": torch.tensor(clip_ids), "frames": torch.tensor(frame_ids)}


def save_sample_latents(pairs: dict[str, torch.Tensor], settings: dict, out: Path) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(pairs, str(out / LATENTS_FILE))
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))
    return out


def load_sample_pairs(folder: str | Path, width: int, height: int, data: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents (n, c, h, w), true frames (n, 3, H, W) uint8) of a sample_latents folder, checked
    against the training run's size and data style. The frames stay uint8 (a quarter of float32's
    memory: 38 MB for 512 frames at 128x192); the decoder stage converts the few it picks per step."""
    from safetensors.torch import load_file

    from aa_engine.errors import BadRequest

    folder = Path(folder)
    if not (folder / LATENTS_FILE).is_file() or not (folder / SETTINGS_FILE).is_file():
        raise BadRequest(f"{folder} has no {LATENTS_FILE} and {SETTINGS_FILE}.",
                         "Make them first: python -m aa_engine.training.sample_latents --weights MODEL --out DIR ...")
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    if (settings["width"], settings["height"], settings["data"]) != (width, height, data):
        raise BadRequest(f"{folder} holds samples of {settings['data']} clips at {settings['width']}x{settings['height']}, "
                         f"not {data} at {width}x{height}.", "Sample them at the decoder run's --width, --height and --data.")
    pairs = load_file(str(folder / LATENTS_FILE))
    truth = {}
    for index in sorted(set(pairs["clips"].tolist())):
        truth[index] = make_clip("train", index, settings["frames"], width, height, data).frames
    frames = np.stack([truth[c][f] for c, f in zip(pairs["clips"].tolist(), pairs["frames"].tolist())])
    return pairs["latents"], torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def main(argv: list[str] | None = None) -> int:
    from aa_contract.settings import PRESETS, expand_preset

    from aa_engine.errors import BadRequest, UserError

    parser = argparse.ArgumentParser(prog="python -m aa_engine.training.sample_latents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=None, help="model folder to sample with (e.g. a stage's out/model)")
    parser.add_argument("--checkpoint", default=None, help="instead of --weights: a training checkpoint's model.safetensors or ema.safetensors")
    parser.add_argument("--out", required=True, help="folder for latents.safetensors and sample_latents.json")
    parser.add_argument("--clips", type=int, default=64, help="training-split clips to sample (default 64)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    parser.add_argument("--width", type=int, default=None, help="(default: the model's native size)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--data", default="rich", help="character style: flat or rich (default rich)")
    parser.add_argument("--preset", default="fast", help="sampler preset as the engine's: fast (default, what the demo uses) or quality")
    parser.add_argument("--guidance", type=float, default=3.5, help="CFG scale (default 3.5, the engine's)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        if bool(args.weights) == bool(args.checkpoint):
            raise BadRequest("Name the model once: --weights MODEL_FOLDER or --checkpoint RUN/checkpoints/step_N/model.safetensors.")
        if args.preset not in PRESETS or args.preset == "custom":
            raise BadRequest(f"Unknown --preset {args.preset!r}.", "Use fast or quality.")
        if args.clips < 1 or args.frames < 1:
            raise BadRequest("--clips and --frames must be at least 1.")
        if args.checkpoint:
            from aa_engine.evaluation.denoiser_probe import load_stage_checkpoint

            model, source = load_stage_checkpoint(args.checkpoint), args.checkpoint
        else:
            from aa_engine.weights import load_model

            model, info = load_model(args.weights)
            source = str(info.source)
        width, height = args.width or model.config.native_size[0], args.height or model.config.native_size[1]
        sampling = {k: v for k, v in expand_preset({"preset": args.preset}).items()
                    if k in ("sampler", "steps", "guidance_interval", "feature_reuse")}
        began = time.perf_counter()
        pairs = sample_clip_latents(model.eval(), args.clips, args.frames, width, height, args.data, sampling, args.guidance)
        settings = {"weights": source, "clips": args.clips, "frames": args.frames, "width": width, "height": height, "data": args.data,
                    "preset": args.preset, "guidance": args.guidance, "first_clip": FIRST_CLIP} | sampling
        save_sample_latents(pairs, settings, args.out)
        print(f"{len(pairs['latents'])} sampled latents of {args.clips} training clips in {time.perf_counter() - began:.0f} s: {args.out}")
        return 0
    except UserError as error:
        print(f"error: {error.message}\nhint: {error.hint}" if error.hint else f"error: {error.message}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
