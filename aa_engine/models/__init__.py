"""The Animate Anyone model, read in data-flow order:

pose_guider.py          skeleton maps -> features added after the denoising UNet's conv_in
reference_attention.py  ReferenceNet's self-attention inputs -> extra keys/values in the denoising UNet
motion_module.py        AnimateDiff-v2 temporal transformer (attention over frames)
video_unet.py           an SD UNet run per frame ("inflated") with motion modules inserted
animate_anyone.py       the bundle (VAE, CLIP image encoder, both UNets, pose guider) and its builders
"""

from aa_engine.models.animate_anyone import AnimateAnyoneModel, build_model

__all__ = ["AnimateAnyoneModel", "build_model"]
