"""Loading and saving weights.

Three sources, chosen by `load_model(spec)`:
  "random-tiny"                 the tiny random test model (seeded: the same weights every time)
  a folder of ours              config.json (ModelConfig) + model.safetensors (prefixed by part)
  a Moore-AnimateAnyone release pretrained_weights/{stable-diffusion-v1-5/unet/config.json,
                                sd-vae-ft-mse/, image_encoder/, denoising_unet.pth, reference_unet.pth,
                                pose_guider.pth, motion_module.pth}  (.safetensors accepted for each .pth)
  None                          the shipped default model (aa_engine/default_model/) when present

Every config is checked before anything is allocated (ModelConfig.validate: types, positive and
bounded sizes, known block types; then the parameter count, from a build on the meta device, is
bounded by MAX_PARAMETERS). Every state dict is checked key by key before loading: a missing or
unexpected key is an error that names the first few, never a silently random layer. Pickled files
are only read with torch.load(weights_only=True), the VAE's and CLIP's by diffusers/transformers,
and any failure there is a WeightsError naming the folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from aa_engine.config import ModelConfig
from aa_engine.errors import WeightsError
from aa_engine.models.animate_anyone import PARTS, AnimateAnyoneModel, build_model, build_unets

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).parent / "default_model"
RANDOM_TINY = "random-tiny"
CHECKPOINT_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# The release's files, relative to its pretrained_weights/ folder.
MOORE_FILES = {
    "unet_config": "stable-diffusion-v1-5/unet/config.json",
    "vae": "sd-vae-ft-mse",
    "image_encoder": "image_encoder",
    "denoising_unet": "denoising_unet",
    "reference_unet": "reference_unet",
    "pose_guider": "pose_guider",
    "motion_module": "motion_module",
}
STATE_SUFFIXES = (".safetensors", ".pth", ".bin", ".ckpt")
# About 3x the released model (2.56 billion parameters: two SD-1.5 UNets, motion modules, VAE,
# CLIP ViT-L): anything bigger is a broken or hostile config.json, refused before allocating.
MAX_PARAMETERS = 8_000_000_000


@dataclass
class WeightsInfo:
    source: str  # what the user asked for
    kind: str  # "random-tiny", "checkpoint" or "moore"
    path: str | None = None
    identity: str = ""  # changes whenever the weights do (used in job fingerprints)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"source": self.source, "kind": self.kind, "path": self.path}


# -- strict state-dict loading --------------------------------------------------------------------
def _first(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str, assign: bool = False) -> None:
    """Load `state` into `module`, refusing any missing, unexpected or mis-shaped key."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_first(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
    mismatched = [k for k in expected if k in state and tuple(expected[k].shape) != tuple(state[k].shape)]
    if mismatched:
        k = mismatched[0]
        problems.append(
            f"{len(mismatched)} key(s) with the wrong shape, e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        )
    if problems:
        raise WeightsError(
            f"{what} does not match the model: " + "; ".join(problems) + ".",
            "The file is incomplete or belongs to another architecture/version; re-download or re-export it. "
            "Refusing to run with layers left at random values.",
        )
    module.load_state_dict(state, strict=True, assign=assign)


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """The parameters each part of `config` would have, counted on the meta device (nothing is
    allocated). The config must have passed ModelConfig.validate."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        reference_unet, denoising_unet, pose_guider = build_unets(config)
        vae = AutoencoderKL.from_config(config.vae)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**config.image_encoder))
    parts = {"reference_unet": reference_unet, "denoising_unet": denoising_unet, "pose_guider": pose_guider,
             "vae": vae, "image_encoder": image_encoder}
    return {name: sum(p.numel() for p in module.parameters()) for name, module in parts.items()}


def check_config(config: ModelConfig, where: str | dict[str, str]) -> int:
    """Validate `config` (already done by ModelConfig.load/from_dict; repeated for configs built in
    code) and bound its parameter count; returns the count. Raises WeightsError naming `where`
    (a file, or per part as ModelConfig.validate takes it)."""
    config.validate(where)
    where = where if isinstance(where, str) else where[""]
    try:
        total = sum(count_parameters(config).values())
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers/transformers refusing a value is the same problem
        raise WeightsError(f"{where}: the model cannot be built from this config ({exc.__class__.__name__}: {exc}).",
                           "Fix the config.json or re-download the weights.", field="config") from exc
    if total > MAX_PARAMETERS:
        raise WeightsError(
            f"{where} describes a model of {total:,} parameters ({total * 4 / 2**30:.0f} GiB in fp32); the limit is {MAX_PARAMETERS:,}.",
            "The config.json is damaged or not an Animate Anyone model; the released model has about 2.6 billion.",
            field="config")
    return total


def _read_json_object(path: Path, what: str) -> dict:
    """A JSON object from `path`, or a WeightsError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise WeightsError(f"{path} is nested too deeply.", f"Re-download {what}.", field="config") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WeightsError(f"Cannot read {path} ({exc}).", f"Re-download {what}.", field="config") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path} must hold a JSON object (got {type(data).__name__}).", f"Re-download {what}.", field="config")
    return data


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a .safetensors file, or a pickled state dict with torch.load(weights_only=True)."""
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any read failure is the same user problem
        raise WeightsError(f"Cannot read weights file {path}: {exc}", "The file may be truncated or not a state dict; re-download it.") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a plain state dict (name -> tensor).", "Point the engine at the released .pth/.safetensors files.")
    return state


def find_state_file(folder: Path, stem: str) -> Path | None:
    for suffix in STATE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


# -- our checkpoints --------------------------------------------------------------------------------
def save_checkpoint(model: AnimateAnyoneModel, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write folder/config.json and folder/model.safetensors (keys prefixed by part name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for part in PARTS:
        for key, value in getattr(model, part).state_dict().items():
            value = value.detach().cpu().contiguous()
            state[f"{part}.{key}"] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    save_file(state, str(folder / CHECKPOINT_FILE))
    model.config.save(folder / CONFIG_FILE)
    return folder


def load_checkpoint(folder: Path) -> AnimateAnyoneModel:
    config = ModelConfig.load(folder / CONFIG_FILE)  # checked field by field
    check_config(config, str(folder / CONFIG_FILE))  # and its size, before allocating
    model = build_model(config)
    state = read_state_file(folder / CHECKPOINT_FILE)
    for part in PARTS:
        prefix = part + "."
        part_state = {k[len(prefix) :]: v.float() for k, v in state.items() if k.startswith(prefix)}
        load_state_strict(getattr(model, part), part_state, f"{folder / CHECKPOINT_FILE} [{part}]")
    stray = sorted(k for k in state if k.split(".", 1)[0] not in PARTS)
    if stray:
        raise WeightsError(f"{folder / CHECKPOINT_FILE} has keys of no known part: {_first(stray)}.", "Is this one of our checkpoints?")
    return model.eval()


# -- the Moore-AnimateAnyone release ----------------------------------------------------------------
def moore_root(folder: Path) -> Path | None:
    """The release's pretrained_weights/ folder: `folder` itself or its pretrained_weights/ child."""
    for candidate in (folder, folder / "pretrained_weights"):
        if find_state_file(candidate, "denoising_unet") or (candidate / MOORE_FILES["unet_config"]).is_file():
            return candidate
    return None


def moore_missing(root: Path) -> list[str]:
    """What the release folder lacks, as paths relative to it."""
    missing = []
    for name, rel in MOORE_FILES.items():
        path = root / rel
        if name in ("vae", "image_encoder"):
            if not (path / "config.json").is_file():
                missing.append(f"{rel}/ (config.json + weights)")
        elif name == "unet_config":
            if not path.is_file():
                missing.append(rel)
        elif find_state_file(root, rel) is None:
            missing.append(f"{rel}.pth (or .safetensors)")
    return missing


def load_moore(root: Path) -> AnimateAnyoneModel:
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModelWithProjection

    missing = moore_missing(root)
    if missing:
        raise WeightsError(
            f"The weights folder {root} is incomplete: missing {', '.join(missing)}.",
            "Download the complete Moore-AnimateAnyone release into it (see README: Weights).",
        )
    # Every config is read and checked before any weights are loaded or layers allocated.
    unet_path, vae_dir, clip_dir = root / MOORE_FILES["unet_config"], root / MOORE_FILES["vae"], root / MOORE_FILES["image_encoder"]
    unet_config = _read_json_object(unet_path, "stable-diffusion-v1-5/unet")
    vae_config = _read_json_object(vae_dir / "config.json", "sd-vae-ft-mse")
    clip_config = _read_json_object(clip_dir / "config.json", "image_encoder")
    missing_clip = [k for k in CLIP_KEYS if k not in clip_config]
    if missing_clip:
        raise WeightsError(f"{clip_dir / 'config.json'} lacks {', '.join(missing_clip)}.", "Re-download image_encoder.", field=missing_clip[0])
    guider_file = find_state_file(root, "pose_guider")
    guider_state = read_state_file(guider_file)
    config = ModelConfig(
        unet={k: v for k, v in unet_config.items() if not k.startswith("_")},
        pose_guider_channels=_guider_channels(guider_state, guider_file),
        vae={k: v for k, v in vae_config.items() if not k.startswith("_")},
        image_encoder={k: clip_config[k] for k in CLIP_KEYS},
        name="moore-animate-anyone",
    )
    where = {"unet": str(unet_path), "vae": str(vae_dir / "config.json"), "image_encoder": str(clip_dir / "config.json"),
             "pose_guider_channels": str(guider_file), "": f"the weights folder {root}"}
    check_config(config, where)
    vae, vae_info = _from_pretrained(AutoencoderKL, vae_dir, "sd-vae-ft-mse")
    image_encoder, clip_info = _from_pretrained(CLIPVisionModelWithProjection, clip_dir, "image_encoder")
    for what, info in (("sd-vae-ft-mse", vae_info), ("image_encoder", clip_info)):
        bad = list(info.get("missing_keys", [])) + list(info.get("unexpected_keys", []))
        if bad:
            raise WeightsError(f"{what} does not match its config: {_first(sorted(bad))}.", f"Re-download {what}.")
    # SD-1.5-sized UNets: build without allocating random weights, then take the file's tensors.
    with torch.device("meta"):
        reference_unet, denoising_unet, pose_guider = build_unets(config)
    reference_file = find_state_file(root, "reference_unet")
    load_state_strict(reference_unet, read_state_file(reference_file), str(reference_file), assign=True)
    denoising_file = find_state_file(root, "denoising_unet")
    motion_file = find_state_file(root, "motion_module")
    denoising_state = read_state_file(denoising_file)
    motion_state = read_state_file(motion_file)
    overlap = sorted(set(denoising_state) & set(motion_state))
    if overlap:
        raise WeightsError(f"{denoising_file.name} and {motion_file.name} both hold {_first(overlap)}.", "Use the files of one release.")
    load_state_strict(denoising_unet, {**denoising_state, **motion_state}, f"{denoising_file.name} + {motion_file.name}", assign=True)
    load_state_strict(pose_guider, guider_state, str(guider_file), assign=True)
    return AnimateAnyoneModel(config, vae, image_encoder, reference_unet, denoising_unet, pose_guider).eval()


CLIP_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size", "projection_dim")


def _from_pretrained(cls, folder: Path, what: str):
    """diffusers/transformers `from_pretrained` on a local folder, any failure (a truncated file, a
    pickle that weights_only loading refuses, a config it rejects) as a WeightsError naming it."""
    try:
        return cls.from_pretrained(folder, output_loading_info=True, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here is "this folder is broken"
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(f"Cannot load {what} from {folder}: {exc.__class__.__name__}: {text[:300]}",
                           f"Re-download {what}; its weights files are only read as plain tensors, never unpickled as code.") from exc


def _guider_channels(state: dict[str, torch.Tensor], path: Path) -> tuple[int, ...]:
    """The pose guider's widths, read off its weights (the release does not store them)."""
    try:
        n_blocks = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        return (state["conv_in.weight"].shape[0],) + tuple(state[f"blocks.{i}.weight"].shape[0] for i in range(1, n_blocks, 2))
    except KeyError as exc:
        raise WeightsError(f"{path} lacks {exc.args[0]}.", "The pose guider file is incomplete; re-download it.") from exc
    except (IndexError, AttributeError) as exc:
        raise WeightsError(f"{path} has tensors of the wrong shape for a pose guider.", "Re-download it.") from exc


def save_moore_layout(model: AnimateAnyoneModel, root: str | Path) -> Path:
    """Write `model` in the release's folder layout and key names (used by tests and for export)."""
    root = Path(root)
    (root / MOORE_FILES["unet_config"]).parent.mkdir(parents=True, exist_ok=True)
    (root / MOORE_FILES["unet_config"]).write_text(json.dumps(dict(model.denoising_unet.config), indent=2))
    model.vae.save_pretrained(root / MOORE_FILES["vae"])
    model.image_encoder.save_pretrained(root / MOORE_FILES["image_encoder"])
    denoising = model.denoising_unet.state_dict()
    torch.save({k: v for k, v in denoising.items() if ".motion_modules." not in k}, root / "denoising_unet.pth")
    torch.save({k: v for k, v in denoising.items() if ".motion_modules." in k}, root / "motion_module.pth")
    torch.save(model.reference_unet.state_dict(), root / "reference_unet.pth")
    torch.save(model.pose_guider.state_dict(), root / "pose_guider.pth")
    return root


# -- the entry point --------------------------------------------------------------------------------
def _identity(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def resolve_spec(spec: str | None) -> str:
    if spec:
        return spec
    if (DEFAULT_MODEL_DIR / CHECKPOINT_FILE).is_file():
        return str(DEFAULT_MODEL_DIR)
    return RANDOM_TINY


def load_model(spec: str | None = None) -> tuple[AnimateAnyoneModel, WeightsInfo]:
    """Load the weights named by `spec` (see the module docstring); returns the model (CPU, float32) and what was loaded."""
    spec = resolve_spec(spec)
    if spec == RANDOM_TINY:
        model = build_model(ModelConfig.tiny(), seed=0, randomize_zero_init=True)
        return model, WeightsInfo(spec, "random-tiny", None, "random-tiny-seed0", ["random weights: output is noise-like, for tests"])
    folder = Path(spec).expanduser()
    if not folder.exists():
        raise WeightsError(f"The weights path {folder} does not exist.", "Give a weights folder, or 'random-tiny', or nothing for the default model.")
    if folder.is_dir() and (folder / CONFIG_FILE).is_file() and (folder / CHECKPOINT_FILE).is_file():
        model = load_checkpoint(folder)
        return model, WeightsInfo(spec, "checkpoint", str(folder), _identity([folder / CHECKPOINT_FILE, folder / CONFIG_FILE]))
    root = moore_root(folder) if folder.is_dir() else None
    if root is None:
        raise WeightsError(
            f"{folder} is neither one of our checkpoints (config.json + model.safetensors) nor a Moore-AnimateAnyone "
            "release folder (denoising_unet.pth, reference_unet.pth, pose_guider.pth, motion_module.pth, ...).",
            "Run `python -m aa_engine info --weights PATH` to see what the folder holds.",
        )
    model = load_moore(root)
    files = [p for p in root.rglob("*") if p.is_file()]
    return model, WeightsInfo(spec, "moore", str(root), _identity(files))


def parameter_counts(model: AnimateAnyoneModel) -> dict[str, int]:
    counts = {part: sum(p.numel() for p in getattr(model, part).parameters()) for part in PARTS}
    counts["motion_modules"] = sum(p.numel() for m in model.motion_modules() for p in m.parameters())
    return counts
