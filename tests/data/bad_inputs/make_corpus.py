"""Writes the bad-input corpus next to this file (run it again after changing a case; the files it
writes are checked in, so the tests do not depend on it). Usage:
    .venv/engine/bin/python tests/data/bad_inputs/make_corpus.py

Layout (tests/engine/test_hardening_corpus.py runs every case):
  lines/NAME.line        one raw protocol line for `serve` (any bytes, no newline)
  jobs/NAME.json         {"job": a job message, "expect": {"code", "field", "message"}}; in a value,
                         "{data}" is this folder, "{examples}" the repository's examples/, "{out}"
                         a fresh output folder (which a refused job must not create)
  args/NAME.json         {"args": animate arguments that replace the defaults' (null: drop the flag),
                         "expect": text the error line must contain}
  weights/NAME/          a weights folder whose config.json is bad (model.safetensors is empty),
                         with expect.txt: text the error must contain
  images/NAME            reference images that must be refused (a decompression bomb among them)
  tracks/NAME.json       keypoint tracks that must be refused
  malicious.pkl          a pickle that, if ever unpickled, creates MARKER (weights_only refuses it)
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "/tmp/aa-engine-malicious-pickle-ran"


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (PIL refuses it before decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")


class Malicious:
    """Unpickling this calls open(MARKER, "w"): a harmless stand-in for code execution."""

    def __reduce__(self):
        return (open, (MARKER, "w"))


LINES = {
    "invalid_utf8": b'{"type": "ping", "note": "\xff\xfe"}',
    "overlong_utf8": b'{"type": "ping", "note": "\xc0\xaf"}',
    "lone_surrogate_bytes": b'{"type": "ping", "note": "\xed\xa0\x80"}',
    "nul_bytes": b"\x00\x00\x00",
    "deep_nesting_list": b"[" * 5_000 + b"]" * 5_000,
    "deep_nesting_object": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "huge_integer": b'{"type": "job", "id": "big", "steps": ' + b"9" * 5000 + b"}",
    "not_json": b"hello engine",
    "truncated_json": b'{"type": "job", "id": "x", "reference": "/tmp/r.p',
    "json_list": b"[1, 2, 3]",
    "json_string": b'"ping"',
    "json_number": b"42",
    "json_null": b"null",
    "no_type": b'{"id": "x"}',
    "numeric_type": b'{"type": 7}',
    "null_type": b'{"type": null}',
    "unknown_type": b'{"type": "dance"}',
    "very_long_type": b'{"type": "' + b"x" * 10_000 + b'"}',
    "cancel_nothing_running": b'{"type": "cancel", "id": "nothing"}',
    "cancel_dict_id": b'{"type": "cancel", "id": {"a": 1}}',
    "escaped_lone_surrogate_type": b'{"type": "\\ud800"}',
    "bom_then_json": b'\xef\xbb\xbf{"type": "dance"}',
}

_BASE = {"type": "job", "reference": "{examples}/reference.png", "poses": "{examples}/poses", "output": "{out}",
         "width": 24, "height": 24, "steps": 1, "video": False}


def job(job_id: str, expect: dict, **fields) -> dict:
    message = {**_BASE, "id": job_id, **fields}
    return {"job": {k: v for k, v in message.items() if v is not ...}, "expect": expect}


BAD_REQUEST = "bad_request"
JOBS = {
    "reference_int": job("reference_int", {"code": BAD_REQUEST, "field": "reference"}, reference=5),
    "reference_dict": job("reference_dict", {"code": BAD_REQUEST, "field": "reference"}, reference={"path": "x"}),
    "reference_list_of_ints": job("reference_list", {"code": BAD_REQUEST, "field": "reference"}, reference=[1, 2]),
    "output_int": job("output_int", {"code": BAD_REQUEST, "field": "output"}, output=7),
    "output_nul": job("output_nul", {"code": BAD_REQUEST, "field": "output", "message": "NUL"}, output="{out}/a\u0000b"),
    "output_empty": job("output_empty", {"code": BAD_REQUEST, "field": "output"}, output=""),
    "poses_list_of_ints": job("poses_ints", {"code": BAD_REQUEST, "field": "poses"}, poses=[1, 2, 3]),
    "poses_dict": job("poses_dict", {"code": BAD_REQUEST, "field": "poses"}, poses={"a": 1}),
    "poses_and_keypoints": job("both", {"code": BAD_REQUEST, "field": "poses"}, keypoints="{data}/tracks/empty_object.json"),
    "no_id": {"job": {k: v for k, v in _BASE.items()}, "expect": {"code": BAD_REQUEST, "field": "id"}},
    "id_int": job("x", {"code": BAD_REQUEST, "field": "id"}) | {"job": {**_BASE, "id": 5}},
    "video_string": job("video", {"code": BAD_REQUEST, "field": "video"}, video="yes"),
    "steps_2000": job("steps", {"code": BAD_REQUEST, "field": "steps"}, steps=2000),
    "steps_zero": job("steps0", {"code": BAD_REQUEST, "field": "steps"}, steps=0),
    "steps_float": job("stepsf", {"code": BAD_REQUEST, "field": "steps"}, steps=2.5),
    "seed_2_pow_63": job("seed", {"code": BAD_REQUEST, "field": "seed"}, seed=2**63),
    "seed_negative": job("seedneg", {"code": BAD_REQUEST, "field": "seed"}, seed=-1),
    "guidance_string": job("gs", {"code": BAD_REQUEST, "field": "guidance"}, guidance="3.5"),
    "guidance_list": job("gl", {"code": BAD_REQUEST, "field": "guidance"}, guidance=[3.5]),
    "guidance_inf": job("ginf", {"code": BAD_REQUEST, "field": "guidance"}, guidance=1e999),
    "guidance_bool": job("gb", {"code": BAD_REQUEST, "field": "guidance"}, guidance=True),
    "fps_negative": job("fpsn", {"code": BAD_REQUEST, "field": "fps"}, fps=-5),
    "fps_zero": job("fps0", {"code": BAD_REQUEST, "field": "fps"}, fps=0),
    "width_not_multiple_of_8": job("w60", {"code": BAD_REQUEST, "field": "width"}, width=60, height=64),
    "width_too_large": job("w8192", {"code": BAD_REQUEST, "field": "width"}, width=8192, height=64),
    "too_many_pixels": job("pix", {"code": BAD_REQUEST, "field": "width"}, width=4096, height=4096),
    "too_small_for_the_model": job("small", {"code": BAD_REQUEST, "field": "width", "message": "too small"}, width=16, height=16),
    "overlap_not_below_window": job("ovl", {"code": BAD_REQUEST, "field": "context_overlap"}, context_frames=8, context_overlap=8),
    "window_beyond_model": job("win", {"code": BAD_REQUEST, "field": "context_frames"}, context_frames=33),
    "reference_missing": job("refmiss", {"code": "bad_input", "field": "reference", "message": "does not exist"},
                             reference="{data}/images/no_such_file.png"),
    "reference_is_a_folder": job("refdir", {"code": "bad_input", "field": "reference", "message": "is a folder"}, reference="{data}/images"),
    "reference_decompression_bomb": job("bomb", {"code": "bad_input", "field": "reference", "message": "limit"},
                                        reference="{data}/images/decompression_bomb.png"),
    "reference_truncated": job("trunc", {"code": "bad_input", "field": "reference", "message": "cannot be read"},
                               reference="{data}/images/truncated.png"),
    "reference_text_file": job("text", {"code": "bad_input", "field": "reference", "message": "cannot be read"},
                               reference="{data}/images/not_an_image.png"),
    "reference_empty_file": job("empty", {"code": "bad_input", "field": "reference", "message": "cannot be read"},
                                reference="{data}/images/zero_bytes.png"),
    "reference_dev_zero": job("devzero", {"code": "bad_input", "field": "reference", "message": "not a regular file"}, reference="/dev/zero"),
    "poses_missing": job("posesmiss", {"code": "bad_input"}, poses="{data}/no_such_folder"),
    "poses_folder_without_maps": job("posesempty", {"code": "bad_input", "message": "no PNG"}, poses="{data}/tracks"),
    "pose_map_decompression_bomb": job("posebomb", {"code": "bad_input", "field": "poses", "message": "limit"},
                                       poses=["{data}/images/decompression_bomb.png"]),
    "keypoints_not_a_track": job("kp", {"code": "track"}, poses=..., keypoints="{data}/tracks/empty_object.json"),
    "keypoints_inline_garbage": job("kpinline", {"code": "track"}, poses=..., keypoints={"format": "nonsense"}),
    "keypoints_missing_file": job("kpmiss", {"code": "track"}, poses=..., keypoints="{data}/tracks/no_such.json"),
    "keypoints_not_json": job("kpjson", {"code": "track"}, poses=..., keypoints="{data}/tracks/not_json.json"),
}

ARGS = {
    "steps_2000": (["--steps", "2000"], "'steps' must be"),
    "seed_too_big": (["--seed", "99999999999999999999"], "'seed' must be"),
    "seed_negative": (["--seed", "-1"], "'seed' must be"),
    "fps_negative": (["--fps", "-5"], "'fps' must be"),
    "fps_zero": (["--fps", "0"], "'fps' must be"),
    "guidance_inf": (["--guidance", "inf"], "'guidance' must be a finite"),
    "guidance_nan": (["--guidance", "nan"], "'guidance' must be a finite"),
    "guidance_too_high": (["--guidance", "1000"], "'guidance' must be"),
    "width_not_multiple_of_8": (["--width", "60", "--height", "64"], "multiple of 8"),
    "too_small_for_the_model": (["--width", "16", "--height", "16"], "too small"),
    "too_many_pixels": (["--width", "4096", "--height", "4096"], "pixels"),
    "overlap_not_below_window": (["--context-frames", "4", "--context-overlap", "4"], "context_overlap"),
    "window_beyond_model": (["--context-frames", "64"], "'context_frames'"),
    "reference_missing": (["--reference", "{data}/images/no_such_file.png"], "does not exist"),
    "reference_is_a_folder": (["--reference", "{data}/images"], "is a folder"),
    "reference_decompression_bomb": (["--reference", "{data}/images/decompression_bomb.png"], "limit"),
    "reference_truncated": (["--reference", "{data}/images/truncated.png"], "cannot be read"),
    "reference_text_file": (["--reference", "{data}/images/not_an_image.png"], "cannot be read"),
    "poses_missing": (["--poses", "{data}/no_such_folder"], "neither a folder"),
    "keypoints_not_a_track": (["--poses", None, "--keypoints", "{data}/tracks/empty_object.json"], "keypoint"),
    "output_is_a_file": (["--out", "{data}/malicious.pkl"], "is a file, not a folder"),
}


def tiny_config() -> dict:
    import sys

    sys.path.insert(0, str(HERE.parents[2]))
    from aa_engine.config import ModelConfig

    return json.loads(json.dumps(ModelConfig.tiny().to_dict()))


def mutate(config: dict, path: str, value) -> dict:
    config = json.loads(json.dumps(config))
    *parents, key = path.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return config


def weights_cases() -> dict[str, tuple[bytes | str, str]]:
    c = tiny_config()
    cases: dict[str, tuple[bytes | str, str]] = {
        "config_is_a_list": ("[1, 2]", "JSON object"),
        "config_is_a_string": ('"random-tiny"', "JSON object"),
        "config_is_not_json": ("{not json", "not valid JSON"),
        "config_is_empty": ("", "not valid JSON"),
        "config_is_not_utf8": (b'{"name": "\xff"}', "Cannot read"),
        "config_nested_too_deeply": ("[" * 5_000 + "]" * 5_000, "nested too deeply"),
        "unet_is_a_list": (mutate(c, "unet", [32, 64]), "'unet'"),
        "negative_channels": (mutate(c, "unet.block_out_channels", [-32, 64]), "'unet.block_out_channels'"),
        "float_channels": (mutate(c, "unet.block_out_channels", [32.5, 64]), "'unet.block_out_channels'"),
        "bool_channels": (mutate(c, "unet.block_out_channels", [True, 64]), "'unet.block_out_channels'"),
        "string_channels": (mutate(c, "unet.block_out_channels", "32,64"), "'unet.block_out_channels'"),
        "absurd_channels": (mutate(c, "unet.block_out_channels", [1_000_000, 2_000_000]), "'unet.block_out_channels'"),
        "no_channels": (mutate(c, "unet.block_out_channels", []), "'unet.block_out_channels'"),
        "missing_channels": (mutate(c, "unet.block_out_channels", ...), "'unet.block_out_channels' is missing"),
        "channels_not_multiple_of_groups": (mutate(c, "unet.block_out_channels", [48, 64]), "multiple of"),
        "zero_layers": (mutate(c, "unet.layers_per_block", 0), "'unet.layers_per_block'"),
        "string_layers": (mutate(c, "unet.layers_per_block", "1"), "'unet.layers_per_block'"),
        "unknown_down_block": (mutate(c, "unet.down_block_types", ["CrossAttnDownBlock3D", "DownBlock2D"]), "unknown block type"),
        "unknown_up_block": (mutate(c, "unet.up_block_types", ["UpBlock2D", "__import__('os')"]), "unknown block type"),
        "block_types_count_mismatch": (mutate(c, "unet.down_block_types", ["DownBlock2D"]), "one block type per width"),
        "unknown_mid_block": (mutate(c, "unet.mid_block_type", "UNetMidBlock2DSimpleCrossAttn"), "'unet.mid_block_type'"),
        "unknown_vae_block": (mutate(c, "vae.up_block_types", ["UpDecoderBlock2D"] * 3 + ["AttnUpDecoderBlock2D"]), "unknown block type"),
        "vae_latent_mismatch": (mutate(c, "vae.latent_channels", 8), "'vae.latent_channels'"),
        "vae_rgb_mismatch": (mutate(c, "vae.in_channels", 4), "'vae.in_channels'"),
        "vae_negative_scaling": (mutate(c, "vae.scaling_factor", -1), "'vae.scaling_factor'"),
        "clip_heads_do_not_divide": (mutate(c, "image_encoder.num_attention_heads", 5), "'image_encoder.hidden_size'"),
        "clip_projection_mismatch": (mutate(c, "image_encoder.projection_dim", 64), "'image_encoder.projection_dim'"),
        "clip_layers_absurd": (mutate(c, "image_encoder.num_hidden_layers", 10**9), "'image_encoder.num_hidden_layers'"),
        "motion_module_not_object": (mutate(c, "motion_module", 5), "'motion_module'"),
        "motion_module_unknown_key": (mutate(c, "motion_module.heads", 8), "unknown key"),
        "motion_table_absurd": (mutate(c, "motion_module.max_frames", 10**7), "'motion_module.max_frames'"),
        "pose_guider_strings": (mutate(c, "pose_guider_channels", ["16", "32"]), "'pose_guider_channels'"),
        "pose_guider_depth_mismatch": (mutate(c, "pose_guider_channels", [16, 32]), "'pose_guider_channels'"),
        "native_size_negative": (mutate(c, "native_size", [0, -8]), "'native_size'"),
        "clip_resize_unknown": (mutate(c, "clip_resize", "Squash"), "'clip_resize'"),
        "name_not_a_string": (mutate(c, "name", 5), "'name'"),
    }
    huge = mutate(c, "unet.block_out_channels", [4096] * 6)
    huge = mutate(huge, "unet.down_block_types", ["CrossAttnDownBlock2D"] * 6)
    huge = mutate(huge, "unet.up_block_types", ["CrossAttnUpBlock2D"] * 6)
    huge = mutate(huge, "unet.layers_per_block", 8)
    cases["parameter_count_beyond_the_limit"] = (huge, "parameters")
    return cases


def main() -> None:
    for folder in ("lines", "jobs", "args", "weights", "images", "tracks"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
    for name, line in LINES.items():
        write(HERE / "lines" / f"{name}.line", line)
    for name, case in JOBS.items():
        write(HERE / "jobs" / f"{name}.json", json.dumps(case, indent=1, allow_nan=True) + "\n")
    for name, (args, expect) in ARGS.items():
        write(HERE / "args" / f"{name}.json", json.dumps({"args": args, "expect": expect}, indent=1) + "\n")
    for name, (config, expect) in weights_cases().items():
        text = config if isinstance(config, (str, bytes)) else json.dumps(config, indent=1)
        write(HERE / "weights" / name / "config.json", text)
        write(HERE / "weights" / name / "model.safetensors", b"")
        write(HERE / "weights" / name / "expect.txt", expect + "\n")
    write(HERE / "images" / "decompression_bomb.png", bomb_png(100_000, 100_000))
    write(HERE / "images" / "truncated.png", (HERE.parents[2] / "examples" / "reference.png").read_bytes()[:300])
    write(HERE / "images" / "not_an_image.png", "this is text, not a PNG\n")
    write(HERE / "images" / "zero_bytes.png", b"")
    write(HERE / "tracks" / "empty_object.json", "{}\n")
    write(HERE / "tracks" / "not_json.json", "{nope\n")
    write(HERE / "malicious.pkl", pickle.dumps({"weights": Malicious()}, protocol=2))


if __name__ == "__main__":
    main()
