"""Reference attention, the core of Animate Anyone.

ReferenceNet (a copy of the SD UNet) runs once on the reference image's latent. In each of its
transformer blocks the *writer* records the input of self-attention (`norm1`'s output), shape
(1, tokens, channels). In the denoising UNet's matching block the *reader* computes self-attention
with queries from its own tokens and keys/values from [own tokens ; recorded reference tokens]
(the reference repeated for every frame), with the denoising block's own attn1 weights.

Blocks are paired by their module path (`down_blocks.0.attentions.0.transformer_blocks.0.attn1`),
which is the same pairing Moore-AnimateAnyone gets by a stable sort of both UNets' blocks by width:
both UNets register down, up, then mid blocks in the same order.

For classifier-free guidance the batch is [unconditional rows ; conditional rows]; the unconditional
rows get no reference tokens (plain self-attention), as in the released implementation.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from torch.nn import functional as F


class ReferenceBank:
    """Recorded reference tokens per block, plus the switches the readers consult."""

    def __init__(self) -> None:
        self.tokens: dict[str, torch.Tensor] = {}
        self.enabled = True
        # Rows [0, uncond_rows) of the denoising batch are unconditional and get no reference tokens.
        self.uncond_rows = 0

    def clear(self) -> None:
        self.tokens.clear()


def _attention(attn: Attention, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Multi-head attention of x (n, q, c) over context (n, k, c) with attn's projections (SDPA)."""
    n = x.shape[0]
    heads = attn.heads
    q = attn.to_q(x)
    k = attn.to_k(context)
    v = attn.to_v(context)
    head_dim = q.shape[-1] // heads
    q, k, v = (t.reshape(n, -1, heads, head_dim).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = out.transpose(1, 2).reshape(n, -1, heads * head_dim).to(x.dtype)
    out = attn.to_out[0](out)
    return attn.to_out[1](out)


class ReferenceWriter:
    """attn1 processor of ReferenceNet: records its input, then does ordinary self-attention."""

    def __init__(self, bank: ReferenceBank, name: str):
        self.bank = bank
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        self.bank.tokens[self.name] = hidden_states
        return _attention(attn, hidden_states, hidden_states)


class ReferenceReader:
    """attn1 processor of the denoising UNet: self-attention extended with the reference tokens."""

    def __init__(self, bank: ReferenceBank, name: str):
        self.bank = bank
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        ref = self.bank.tokens.get(self.name) if self.bank.enabled else None
        if ref is None:
            return _attention(attn, hidden_states, hidden_states)
        u = self.bank.uncond_rows
        cond = hidden_states[u:]
        ref = ref.to(cond.dtype)
        if ref.shape[0] == 1:
            ref = ref.expand(cond.shape[0], -1, -1)
        elif ref.shape[0] != cond.shape[0]:
            # One reference per video: repeat each reference over that video's frames.
            ref = ref.repeat_interleave(cond.shape[0] // ref.shape[0], dim=0)
        out_cond = _attention(attn, cond, torch.cat([cond, ref], dim=1))
        if u == 0:
            return out_cond
        out_uncond = _attention(attn, hidden_states[:u], hidden_states[:u])
        return torch.cat([out_uncond, out_cond], dim=0)


def self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Module paths of every transformer block's self-attention (attn1), in registration order."""
    return [name for name, module in unet.named_modules() if name.endswith(".attn1") and isinstance(module, Attention)]


def install_reference_attention(reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module, bank: ReferenceBank) -> int:
    """Put writers on ReferenceNet's attn1s and readers on the denoising UNet's; returns the pair count."""
    ref_names = self_attention_names(reference_unet)
    den_names = self_attention_names(denoising_unet)
    if ref_names != den_names:
        raise ValueError("ReferenceNet and the denoising UNet have different transformer blocks; they cannot be paired")
    ref_modules = dict(reference_unet.named_modules())
    den_modules = dict(denoising_unet.named_modules())
    for name in ref_names:
        ref_modules[name].set_processor(ReferenceWriter(bank, name))
        den_modules[name].set_processor(ReferenceReader(bank, name))
    return len(ref_names)
