"""Our modules' state-dict keys are exactly those of the released Moore-AnimateAnyone checkpoints."""

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from aa_engine.config import ModelConfig
from aa_engine.models.pose_guider import PoseGuider
from aa_engine.models.video_unet import inflate_unet, strip_reference_head

DATA = Path(__file__).parent / "data"


def _sd15_unets():
    cfg = ModelConfig.sd15()
    with torch.device("meta"):
        reference = UNet2DConditionModel(**cfg.unet)
        strip_reference_head(reference)
        denoising = UNet2DConditionModel(**cfg.unet)
        inflate_unet(denoising, cfg.motion_module)
    return reference, denoising


def test_reference_unet_keys_equal_release():
    reference, _ = _sd15_unets()
    expected = set(json.loads((DATA / "reference_unet_keys_sd15.json").read_text()))
    assert len(expected) == 682
    assert set(reference.state_dict()) == expected


def test_motion_module_keys_and_shapes_equal_release():
    _, denoising = _sd15_unets()
    expected = json.loads((DATA / "motion_module_keys_sd15.json").read_text())
    ours = {k: list(v.shape) for k, v in denoising.state_dict().items() if ".motion_modules." in k}
    assert len(expected) == 588
    assert ours == expected


def test_denoising_unet_non_motion_keys_are_the_2d_unet_keys():
    _, denoising = _sd15_unets()
    non_motion = [k for k in denoising.state_dict() if ".motion_modules." not in k]
    assert len(non_motion) == 686


def test_pose_guider_keys_and_channels_equal_release():
    guider = PoseGuider()
    shapes = {k: tuple(v.shape) for k, v in guider.state_dict().items()}
    assert len(shapes) == 16
    channels = [shapes["conv_in.weight"][:2]] + [shapes[f"blocks.{i}.weight"][:2] for i in range(6)] + [shapes["conv_out.weight"][:2]]
    assert channels == [(16, 3), (16, 16), (32, 16), (32, 32), (96, 32), (96, 96), (256, 96), (320, 256)]
