"""The generation settings, declared once.

Each `Setting` says its name, type, default, range, help text and the message a bad value gets.
Everything else is derived from `SETTINGS`:

- the add-on's shot properties and panel fields (`blender_addon/properties.py`, `panel.py`);
- the command-line flags of `aa_engine animate` and of the add-on's command-line render
  (`add_arguments`);
- the `job` message's setting fields and their validation (`validate`), and what `accepted`
  echoes back;
- the engine's `GenerationConfig` (`aa_engine/config.py`).

A bad value is refused by `validate`, with the same message on every path: the engine's command
line, a protocol `error` event, and the add-on's panel.

To add a setting: append a `Setting` here (and use it in the engine); the rest follows.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from .errors import InvalidSetting

SEED_MAX = 2**63 - 1          # numpy/torch generators take a signed 64-bit seed
MAX_SIDE = 4096               # pixels, either side
MAX_PIXELS = 2048 * 2048      # width x height: about 7x the released 512x768, already beyond any GPU's memory
TRAIN_TIMESTEPS = 1000        # the scheduler's training timesteps bound the steps


@dataclass(frozen=True)
class Setting:
    """One setting of a generation. `default=None` (width/height) means "the model's native size"."""

    name: str
    type: type                     # int, float, bool or str
    default: Any
    help: str
    label: str = ""                # the add-on's property name (default: from `name`)
    minimum: float | None = None
    maximum: float | None = None
    multiple_of: int | None = None
    choices: tuple[str, ...] = ()
    hint: str = ""                 # what to do when a value is refused
    # Whether a changed value changes the frames: it is part of the job's fingerprint (resume key).
    changes_frames: bool = True
    group: str = "sampling"        # where the panel shows it: size, sampling, context, output
    # The add-on's property default where `default` cannot be a property value (None = native size).
    ui_default: Any = None
    soft_max: float | None = None  # the add-on's slider end
    # Where the setting appears: a job field and both command lines always; an add-on property
    # unless the add-on takes it from the scene (fps: the scene's frame rate).
    addon_property: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def ui_label(self) -> str:
        return self.label or self.name.replace("_", " ").title()

    @property
    def property_default(self) -> Any:
        return self.default if self.default is not None else self.ui_default

    def range_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.minimum is not None and self.maximum is not None:
            parts.append(f"between {_num(self.minimum)} and {_num(self.maximum)}")
        elif self.minimum is not None:
            parts.append(f"at least {_num(self.minimum)}")
        elif self.maximum is not None:
            parts.append(f"at most {_num(self.maximum)}")
        if self.multiple_of:
            parts.append(f"a multiple of {self.multiple_of}")
        return " and ".join(parts)


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


SETTINGS: tuple[Setting, ...] = (
    Setting("width", int, None, "frame width in pixels, a multiple of 8 (default: the model's native size)",
            minimum=8, maximum=MAX_SIDE, multiple_of=8, group="size", ui_default=512, soft_max=2048,
            hint="The model works on 8x8-pixel latent cells; leave it unset for the model's native size."),
    Setting("height", int, None, "frame height in pixels, a multiple of 8 (default: the model's native size)",
            minimum=8, maximum=MAX_SIDE, multiple_of=8, group="size", ui_default=768, soft_max=2048,
            hint="The model works on 8x8-pixel latent cells; leave it unset for the model's native size."),
    Setting("steps", int, 30, "denoising steps (more: cleaner, slower; the paper uses 20)",
            minimum=1, maximum=TRAIN_TIMESTEPS, soft_max=100, hint="30 is the default; 20 is the paper's."),
    Setting("guidance", float, 3.5, "classifier-free guidance scale, 1 = off",
            minimum=1.0, maximum=30.0, soft_max=10.0, hint="3.5 is the default; 1 turns guidance off."),
    Setting("seed", int, 42, "noise seed: the same seed and settings give the same frames",
            minimum=0, maximum=SEED_MAX, hint="Any whole number from 0 up."),
    Setting("context_frames", int, 24, "frames denoised together; longer shots use overlapping windows",
            minimum=1, maximum=32, group="context", hint="24 is the default; the motion modules see at most 32 frames."),
    Setting("context_overlap", int, 4, "frames shared by neighbouring context windows (left unset with a shorter window: context_frames - 1)",
            label="Overlap", minimum=0, maximum=31, group="context", hint="4 is the default; it must be below context_frames."),
    Setting("context_loop", bool, False,
            "let the context windows wrap round from the last frame to the first: a seamless loop for a shot whose "
            "end leads back into its start (a walk cycle); changes only shots longer than context_frames",
            label="Seamless Loop", group="context", hint="Give true or false (off is the default)."),
    Setting("fps", float, 24.0, "frame rate of video.mp4", label="FPS", minimum=0.001, maximum=1000.0,
            changes_frames=False, group="output", addon_property=False,
            hint="The add-on uses the scene's frame rate."),
    Setting("sampler", str, "ddim",
            "the sampler: ddim (the release's), dpm++2m (DPM-Solver++ 2M), unipc (UniPC) or euler; all on the model's "
            "v-prediction, zero-terminal-SNR, trailing schedule. The multistep ones reach DDIM's quality in fewer steps "
            "(docs/performance.md)",
            choices=("ddim", "dpm++2m", "unipc", "euler"), group="sampling",
            hint="ddim is the default (the release's); dpm++2m or unipc with fewer steps is faster."),
    Setting("guidance_interval", float, 1.0,
            "the fraction of the steps, from the first, that use classifier-free guidance; the later steps run the "
            "conditional half only (each costs half). 1 = every step",
            label="Guidance Steps", minimum=0.0, maximum=1.0, group="sampling",
            hint="1 is the default; 0.5 guides the first half of the steps (docs/performance.md)."),
    Setting("feature_reuse", int, 1,
            "DeepCache-style feature reuse: the whole UNet runs every N-th step, the steps between reuse its deep "
            "features and recompute only the outermost blocks. 1 = off",
            label="Feature Reuse", minimum=1, maximum=10, group="sampling",
            hint="1 (off) is the default; 2 recomputes the deep blocks every other step (docs/performance.md)."),
    Setting("preset", str, "custom",
            "custom: use the sampler, steps, guidance steps and feature reuse as set; quality: the release's "
            "sampling (ddim, 30 steps, guided throughout, no reuse); fast: the fastest setting measured to keep "
            "DDIM-30's quality (docs/performance.md). A preset replaces those four settings",
            choices=("custom", "quality", "fast"), group="sampling",
            hint="custom is the default; fast for previews and most shots, quality to reproduce the release."),
    Setting("context_batch", int, 1,
            "context windows denoised together in one model call: faster where the device has room "
            "(each window adds its own activations); the frames stay the same",
            label="Window Batch", minimum=1, maximum=64, changes_frames=False, group="context",
            hint="1 is the default (least memory); 2-4 is usually faster on a GPU with memory to spare."),
    Setting("decode_batch", int, 4, "frames per VAE decode call: bounds the decoder's peak memory",
            minimum=1, maximum=256, changes_frames=False, group="output", hint="4 is the default; lower it if decoding runs out of memory."),
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


# What each preset sets (the settings it replaces); "custom" replaces nothing.
PRESETS: dict[str, dict[str, Any]] = {
    "custom": {},
    "quality": {"sampler": "ddim", "steps": 30, "guidance_interval": 1.0, "feature_reuse": 1},
    # measured in docs/performance.md: 0.27x DDIM-30's time at DDIM-30's quality against ground truth
    "fast": {"sampler": "dpm++2m", "steps": 8, "guidance_interval": 0.5, "feature_reuse": 1},
}


def expand_preset(values: dict[str, Any]) -> dict[str, Any]:
    """The settings with the preset's values in place of the ones it sets (a copy)."""
    return {**values, **PRESETS.get(values.get("preset", "custom"), {})}


def defaults() -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS}


# -- validation ------------------------------------------------------------------------------------
def _refuse(setting: Setting, message: str) -> InvalidSetting:
    return InvalidSetting(message, setting.hint, field=setting.name)


def check_value(setting: Setting, value: Any) -> Any:
    """The value, normalised (an int given for a float setting becomes a float); raises
    InvalidSetting naming the setting."""
    name = setting.name
    if value is None and setting.default is None:
        return None
    if setting.type is bool:
        if not isinstance(value, bool):
            raise _refuse(setting, f"'{name}' must be true or false (got {value!r}).")
        return value
    if setting.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _refuse(setting, f"'{name}' must be a whole number (got {value!r}).")
    elif setting.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _refuse(setting, f"'{name}' must be a number (got {value!r}).")
        if not math.isfinite(value):
            raise _refuse(setting, f"'{name}' must be a finite number (got {value!r}).")
        value = float(value)
    elif setting.type is str:
        if not isinstance(value, str):
            raise _refuse(setting, f"'{name}' must be a string (got {value!r}).")
    if setting.choices and value not in setting.choices:
        raise _refuse(setting, f"'{name}' must be {setting.range_text()} (got {value!r}).")
    low, high = setting.minimum, setting.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        raise _refuse(setting, f"'{name}' must be {setting.range_text()} (got {value!r}).")
    step = setting.multiple_of
    if step and value % step:
        below = value // step * step
        nearest = f"{below} or {below + step}" if below >= (low or step) else str(below + step)
        raise _refuse(setting, f"'{name}' must be a multiple of {step} (got {value!r}): use {nearest}.")
    return value


def validate(values: dict[str, Any], *, fill_defaults: bool = True) -> dict[str, Any]:
    """Check a dict of settings; returns them normalised, with the defaults filled in for those
    not given (unless fill_defaults is False). Keys that are not settings are ignored here (the
    protocol reports them as warnings). Raises InvalidSetting naming the first bad setting."""
    out = defaults() if fill_defaults else {}
    for name, value in values.items():
        if name in BY_NAME:
            out[name] = check_value(BY_NAME[name], value)
    if fill_defaults and "context_overlap" not in values and out["context_frames"] <= out["context_overlap"]:
        # A short window the user chose with the overlap they left alone: the default overlap shrinks
        # to fit it (a user's own overlap that does not fit is refused below).
        out["context_overlap"] = out["context_frames"] - 1
    _check_together(out)
    return out


def _check_together(values: dict[str, Any]) -> None:
    """The checks that involve two settings."""
    frames, overlap = values.get("context_frames"), values.get("context_overlap")
    if frames is not None and overlap is not None and overlap >= frames:
        raise InvalidSetting(
            f"'context_overlap' must be below context_frames (got {overlap} with context_frames={frames}).",
            BY_NAME["context_overlap"].hint, field="context_overlap")
    width, height = values.get("width"), values.get("height")
    if width is not None and height is not None and width * height > MAX_PIXELS:
        raise InvalidSetting(
            f"{width}x{height} is {width * height} pixels; the limit is {MAX_PIXELS} (2048x2048).",
            "Render smaller and upscale the frames afterwards.", field="width")


def check_window(values: dict[str, Any], max_context_frames: int) -> None:
    """The model-dependent check: the window must fit the motion modules' position table."""
    frames = values.get("context_frames")
    if frames is not None and frames > max_context_frames:
        raise InvalidSetting(
            f"'context_frames' is {frames}, but this model's motion modules see at most {max_context_frames} frames.",
            f"Use at most {max_context_frames}; longer videos are handled by overlapping windows.", field="context_frames")


def fingerprint_values(values: dict[str, Any]) -> dict[str, Any]:
    """The settings that change the frames: the part of a job's identity they contribute."""
    return {k: v for k, v in values.items() if k in BY_NAME and BY_NAME[k].changes_frames}


# -- command lines ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, *, with_defaults: bool = True) -> None:
    """One flag per setting (`--context-frames`, `--context-loop/--no-context-loop`). With
    with_defaults the declared defaults apply (the engine's `animate`); without, every flag
    defaults to None, meaning "keep the value saved in the .blend" (the add-on's render)."""
    group = parser.add_argument_group("generation settings")
    for s in SETTINGS:
        default = s.default if with_defaults else None
        shown = f" (default {_num(s.default)})" if with_defaults and s.default is not None else ""
        if s.type is bool:
            group.add_argument(s.flag, dest=s.name, action=argparse.BooleanOptionalAction, default=default, help=s.help + shown)
        else:
            group.add_argument(s.flag, dest=s.name, type=s.type, default=default, metavar=s.name.upper(),
                               choices=s.choices or None, help=s.help + shown)


def from_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on a command line (those left at None are omitted)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}


# -- documentation -------------------------------------------------------------------------------
def markdown_table() -> str:
    """The settings as a markdown table (docs/settings.md holds its output; a test keeps them equal)."""
    rows = ["| setting | job field | command-line flag | type | default | range | what it does |",
            "|---|---|---|---|---|---|---|"]
    for s in SETTINGS:
        default = "model's native size" if s.default is None else repr(s.default).lower() if s.type is bool else _num(s.default)
        flag = f"`{s.flag}` / `--no-{s.flag[2:]}`" if s.type is bool else f"`{s.flag}`"
        rows.append(f"| {s.ui_label} | `{s.name}` | {flag} | {s.type.__name__} | {default} | {s.range_text() or '-'} | {s.help} |")
    return "\n".join(rows) + "\n"


DOC_BEGIN, DOC_END = "<!-- settings table: begin -->", "<!-- settings table: end -->"


def with_table(document: str) -> str:
    """The document with the table between its markers replaced by today's declaration."""
    head, _, rest = document.partition(DOC_BEGIN)
    _, _, tail = rest.partition(DOC_END)
    return f"{head}{DOC_BEGIN}\n{markdown_table()}{DOC_END}{tail}"


if __name__ == "__main__":
    # python -m aa_contract.settings              print the table
    # python -m aa_contract.settings docs/settings.md   rewrite the table in that document
    import sys
    from pathlib import Path

    if len(sys.argv) > 1:
        doc = Path(sys.argv[1])
        doc.write_text(with_table(doc.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table(), end="")
