"""Evaluation: metrics behave as documented, the warp baseline follows poses, the ablation table is produced."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from aa_engine.data import make_clip
from aa_engine.errors import BadRequest
from aa_engine.evaluation.evaluate import EvalConfig, evaluate, write_report
from aa_engine.evaluation.metrics import WINDOW, all_metrics, figure_mask, psnr, region_ssim, ssim, temporal_error
from aa_engine.evaluation.warp_baseline import warp_reference


def test_identical_videos_score_perfectly():
    clip = make_clip("heldout", 0, 3)
    scores = all_metrics(clip.frames, clip.frames)
    assert scores["ssim"] == pytest.approx(1.0)
    assert scores["l1"] == 0 and scores["temporal"] == 0
    assert scores["psnr"] > 90


def test_more_noise_scores_worse():
    clip = make_clip("heldout", 1, 3)
    rng = np.random.default_rng(0)
    noisy = [np.clip(clip.frames + rng.normal(0, s, clip.frames.shape), 0, 255).astype(np.uint8) for s in (5, 30)]
    assert ssim(noisy[0], clip.frames) > ssim(noisy[1], clip.frames)
    assert psnr(noisy[0], clip.frames) > psnr(noisy[1], clip.frames)


def test_flicker_scores_worse_on_temporal_error_than_a_steady_offset():
    clip = make_clip("train", 3, 6)
    base = clip.frames.astype(np.int16)
    steady = np.clip(base + 12, 0, 255).astype(np.uint8)
    signs = np.where(np.arange(len(base)) % 2 == 0, 12, -12).reshape(-1, 1, 1, 1)
    flicker = np.clip(base + signs, 0, 255).astype(np.uint8)
    assert temporal_error(flicker, clip.frames) > 5 * temporal_error(steady, clip.frames)


def test_figure_mask_is_the_keypoints_box_with_a_margin():
    clip = make_clip("heldout", 2, 3, 128, 192, "rich")
    mask = figure_mask(clip.keypoints, 192, 128)
    assert mask.shape == (3, 192, 128)
    for frame, points in zip(mask, clip.keypoints):
        seen = points[points[:, 2] > 0]
        assert all(frame[int(y), int(x)] for x, y, _ in seen if 0 <= x < 128 and 0 <= y < 192)
        rows, cols = np.nonzero(frame)
        assert rows.min() <= max(0, seen[:, 1].min() - 12) and cols.max() >= min(127, seen[:, 0].max() + 12)  # 192 / 16 px
        assert frame.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a box
    nothing = clip.keypoints.copy()
    nothing[..., 2] = 0
    assert not figure_mask(nothing, 192, 128).any()


def test_region_ssim_splits_the_frame_ssim_by_the_figure_box():
    clip = make_clip("heldout", 4, 2, 128, 192, "rich")
    mask = figure_mask(clip.keypoints, 192, 128)
    # noise only on background pixels farther from the box than SSIM's window reaches
    far = np.ones_like(mask)
    for f, m in enumerate(mask):
        rows, cols = np.nonzero(m)
        far[f, max(0, rows.min() - WINDOW):rows.max() + WINDOW + 1, max(0, cols.min() - WINDOW):cols.max() + WINDOW + 1] = False
    noisy = clip.frames.astype(np.int16) + np.random.default_rng(0).normal(0, 40, clip.frames.shape).astype(np.int16) * far[..., None]
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    split = region_ssim(noisy, clip.frames, mask)
    assert split["ssim_figure"] == pytest.approx(1.0)
    assert split["ssim_background"] < 0.9
    # the frame's SSIM is the two regions' area-weighted mean
    r = WINDOW // 2
    share = mask[:, r:-r, r:-r].mean()
    assert ssim(noisy, clip.frames) == pytest.approx(share * split["ssim_figure"] + (1 - share) * split["ssim_background"])


def test_warp_baseline_follows_the_target_pose():
    clip = make_clip("heldout", 2, 6)
    same = warp_reference(clip.reference, clip.reference_keypoints, clip.reference_keypoints)
    assert ssim(same[None], clip.reference[None]) > 0.85
    warped = np.stack([warp_reference(clip.reference, clip.reference_keypoints, k) for k in clip.keypoints])
    static = np.repeat(clip.reference[None], len(clip.frames), axis=0)
    assert ssim(warped, clip.frames) > ssim(static, clip.frames)


def test_no_motion_ablation_equals_the_model_with_identity_motion_modules(tiny_model, reference_image, pose_images):
    """The no_motion row switches the motion modules off (the model is not changed): exactly the
    model whose motion modules are identities (zero output projections, a deep copy's)."""
    import copy

    from aa_engine.config import GenerationConfig
    from aa_engine.pipeline import AnimateAnyonePipeline

    identity = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for module in identity.motion_modules():
            module.temporal_transformer.proj_out.weight.zero_()
            module.temporal_transformer.proj_out.bias.zero_()
    config = GenerationConfig(width=64, height=64, steps=2)
    off = AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:3], dataclasses.replace(config, motion_modules=False))
    zeroed = AnimateAnyonePipeline(identity)(reference_image, pose_images[:3], config)
    moving = AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:3], config)
    assert all(np.array_equal(a, b) for a, b in zip(off, zeroed))
    assert not all(np.array_equal(a, b) for a, b in zip(off, moving)), "the switch did not reach the motion modules"


@pytest.mark.slow
def test_evaluation_writes_the_table_and_the_contact_sheet(tiny_model, tmp_path):
    config = EvalConfig(clips=1, frames=2, width=64, height=64, steps=2, sheet_clips=1)
    result = evaluate(tiny_model, config)
    assert set(result.scores) == {"full", "no_referencenet", "no_motion", "warp_baseline", "vae_ceiling"}
    paths = write_report(result, tmp_path)
    table = paths["table"].read_text()
    assert "| full |" in table and "| warp_baseline |" in table and "SSIM figure ↑ | SSIM background ↑" in table
    assert all(0 < scores["ssim_figure"] <= 1 and 0 < scores["ssim_background"] <= 1 for scores in result.scores.values())
    report = json.loads(paths["json"].read_text())
    assert report["per_clip"]["full"][0]["clip"] == 0 and report["per_clip"]["full"][0]["ssim"] == pytest.approx(report["scores"]["full"]["ssim"])
    from PIL import Image

    sheet = Image.open(paths["sheet"])
    assert sheet.width > 64 * 3 and sheet.height >= 64 * 2 * 7  # reference/poses row, 5 rows of results, ground truth


def test_unknown_ablation_is_a_clear_error():
    import argparse

    from aa_engine.evaluation import add_evaluate_arguments, run_evaluate

    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    args = parser.parse_args(["--out", "x", "--ablations", "full,no_vae"])
    with pytest.raises(BadRequest, match="no_vae"):
        run_evaluate(args)


@pytest.mark.slow
def test_a_vae_only_stage_product_gives_the_vae_ceiling_row(tmp_path):
    import argparse

    from aa_engine.evaluation import add_evaluate_arguments, run_evaluate
    from aa_engine.training.config import TrainConfig
    from aa_engine.training.trainer import train

    train(TrainConfig(stage="vae", arch="tiny", data="rich", out=str(tmp_path / "vae"), steps=1, batch_size=1, width=64, height=64,
                      sample_every=0, cpu=True))
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    common = ["--weights", str(tmp_path / "vae" / "vae"), "--clips", "1", "--frames", "2", "--width", "64", "--height", "64", "--data", "rich"]
    assert run_evaluate(parser.parse_args(common + ["--out", str(tmp_path / "eval"), "--ablations", "vae_ceiling"])) == 0
    assert "| vae_ceiling |" in (tmp_path / "eval" / "evaluation.md").read_text()
    with pytest.raises(BadRequest, match="holds only a VAE"):
        run_evaluate(parser.parse_args(common + ["--out", str(tmp_path / "eval2"), "--ablations", "full,vae_ceiling"]))


def test_a_preset_evaluates_with_the_engines_sampler_settings(tmp_path):
    import argparse
    import json

    from aa_engine.data.dataset import make_clip
    from aa_engine.evaluation import add_evaluate_arguments, run_evaluate
    from aa_engine.evaluation.generate import generate_clip
    from aa_engine.evaluation.metrics import ssim
    from aa_engine.weights import load_model

    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    common = ["--weights", "random-tiny", "--clips", "1", "--frames", "2", "--width", "64", "--height", "64", "--data", "flat", "--ablations", "full"]
    assert run_evaluate(parser.parse_args(common + ["--out", str(tmp_path), "--preset", "fast"])) == 0
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert {k: report["config"][k] for k in ("sampler", "steps", "guidance_interval")} == {"sampler": "dpm++2m", "steps": 8, "guidance_interval": 0.5}
    clip = make_clip("heldout", 0, 2, 64, 64)
    video = generate_clip(load_model("random-tiny")[0], clip, steps=8, sampler="dpm++2m", guidance_interval=0.5)
    assert report["scores"]["full"]["ssim"] == pytest.approx(ssim(video, clip.frames), abs=1e-9)
    with pytest.raises(BadRequest, match="--preset"):
        run_evaluate(parser.parse_args(common + ["--out", str(tmp_path), "--preset", "fastest"]))


@pytest.mark.slow
def test_a_training_checkpoint_is_scored_with_its_vae_config(tmp_path):
    import argparse
    import json

    from safetensors.torch import save_file

    from aa_engine.evaluation import add_evaluate_arguments, run_evaluate
    from aa_engine.models import build_model
    from aa_engine.training.config import v2_model_config

    model = build_model(v2_model_config(), seed=0)
    save_file({f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "vae_config.json").write_text(json.dumps(model.config.vae))
    parser = argparse.ArgumentParser()
    add_evaluate_arguments(parser)
    common = ["--checkpoint", str(tmp_path / "model.safetensors"), "--clips", "1", "--frames", "2", "--width", "64", "--height", "64",
              "--data", "rich", "--ablations", "vae_ceiling", "--out", str(tmp_path / "eval")]
    assert run_evaluate(parser.parse_args(common + ["--vae-config", str(tmp_path / "vae_config.json")])) == 0
    assert "| vae_ceiling |" in (tmp_path / "eval" / "evaluation.md").read_text()
    with pytest.raises(BadRequest, match="--vae-config"):
        run_evaluate(parser.parse_args(common))


def test_a_missing_training_checkpoint_names_the_ones_the_run_has(tmp_path):
    from aa_engine.evaluation.denoiser_probe import load_stage_checkpoint

    for step in (100, 200):
        (tmp_path / "run" / "checkpoints" / f"step_{step:06d}").mkdir(parents=True)
        (tmp_path / "run" / "checkpoints" / f"step_{step:06d}" / "model.safetensors").write_bytes(b"")
    with pytest.raises(BadRequest, match="No training checkpoint at .*step_000300") as error:
        load_stage_checkpoint(str(tmp_path / "run" / "checkpoints" / "step_000300" / "model.safetensors"))
    assert "step_000100, step_000200" in error.value.hint
    with pytest.raises(BadRequest, match="No training checkpoint"):
        load_stage_checkpoint(str(tmp_path / "elsewhere" / "model.safetensors"))
