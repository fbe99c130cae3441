"""Reference attention, the core of Animate Anyone.

ReferenceNet (a copy of the SD UNet) runs once on the reference image's latent. In each of its
transformer blocks the *writer* records the input of self-attention (`norm1`'s output), shape
(1, tokens, channels). In the denoising UNet's matching block the *reader* computes self-attention
with queries from its own tokens and keys/values from [own tokens ; recorded reference tokens]
(the reference repeated for every frame), with the denoising block's own attn1 weights.

Blocks are paired by their module path (`down_blocks.0.attentions.0.transformer_blocks.0.attn1`),
which is the same pairing Moore-AnimateAnyone gets by a stable sort of both UNets' blocks by width:
both UNets register down, up, then mid blocks in the same order.

The state is explicit: nothing is stored on the model. The writers fill the dict they are handed
through diffusers' `cross_attention_kwargs` (`record=`), which becomes a `ReferenceTokens`; the
denoising UNet's forward hands that object to the readers (`reference=`). No reference (None) is
plain self-attention: the "CLIP path only" ablation, or the unconditional half of a CFG batch.

For classifier-free guidance the batch is [unconditional rows ; conditional rows]; the unconditional
rows get no reference tokens (plain self-attention), as in the released implementation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch.nn import functional as F


@dataclass(frozen=True)
class ReferenceTokens:
    """What ReferenceNet recorded: attn1 module path -> (n_references, tokens, channels).

    One reference per video; with several videos in the conditional rows, each reference covers
    its own consecutive rows (frames). uncond_rows: rows [0, uncond_rows) of the denoising batch are
    unconditional and get no reference tokens.
    """

    tokens: dict[str, torch.Tensor]
    uncond_rows: int = 0

    def for_batch(self, uncond_rows: int) -> "ReferenceTokens":
        """The same tokens for a batch whose first `uncond_rows` rows are unconditional."""
        return dataclasses.replace(self, uncond_rows=uncond_rows)

    def to(self, device=None, dtype=None) -> "ReferenceTokens":
        return dataclasses.replace(self, tokens={k: v.to(device=device, dtype=dtype) for k, v in self.tokens.items()})


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, inner = t.shape
    return t.reshape(n, length, heads, inner // heads).transpose(1, 2)


def _attention(attn: Attention, x: torch.Tensor, context: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention (SDPA) of x (n, q, c) over context (n, k, c) with attn's projections.

    extra (1 or n, r, c): more keys/values appended to every row's context. Its projections are
    computed once and broadcast, not once per frame.
    """
    n = x.shape[0]
    q = attn.to_q(x)
    k = attn.to_k(context)
    v = attn.to_v(context)
    if extra is not None:
        k_extra, v_extra = attn.to_k(extra), attn.to_v(extra)
        if k_extra.shape[0] != n:
            k_extra = k_extra.expand(n, -1, -1) if k_extra.shape[0] == 1 else k_extra.repeat_interleave(n // k_extra.shape[0], dim=0)
            v_extra = v_extra.expand(n, -1, -1) if v_extra.shape[0] == 1 else v_extra.repeat_interleave(n // v_extra.shape[0], dim=0)
        k = torch.cat([k, k_extra], dim=1)
        v = torch.cat([v, v_extra], dim=1)
    q, k, v = (_heads(t, attn.heads) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
    out = out.transpose(1, 2).reshape(n, -1, q.shape[1] * q.shape[-1]).to(x.dtype)
    return attn.to_out[1](attn.to_out[0](out))


class ReferenceWriter:
    """attn1 processor of ReferenceNet: records its input into `record` (when given), then does
    ordinary self-attention."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None,
                 record: dict[str, torch.Tensor] | None = None, reference: ReferenceTokens | None = None):
        if record is not None:
            record[self.name] = hidden_states
        return _attention(attn, hidden_states, hidden_states)


class ReferenceReader:
    """attn1 processor of the denoising UNet: self-attention extended with the reference tokens."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None,
                 reference: ReferenceTokens | None = None, record: dict | None = None):
        ref = None if reference is None else reference.tokens.get(self.name)
        if ref is None:
            return _attention(attn, hidden_states, hidden_states)
        u = reference.uncond_rows
        cond = hidden_states[u:]
        # One reference per video; with several videos in the batch, each covers its own frames.
        out_cond = _attention(attn, cond, cond, extra=ref.to(cond.dtype))
        if u == 0:
            return out_cond
        out_uncond = _attention(attn, hidden_states[:u], hidden_states[:u])
        return torch.cat([out_uncond, out_cond], dim=0)


class CrossAttention(AttnProcessor2_0):
    """attn2: cross-attention to the CLIP context, diffusers' SDPA processor.

    The context here is one token (the projected CLIP image embedding), and softmax over a single
    key is exactly 1: every query gets the same output, to_out(to_v(context)). So with one context
    token the queries, the keys and the attention are skipped and to_v(context) is broadcast over
    the tokens (the result is bit-identical to the full path). Longer contexts take diffusers' path unchanged. The processor also names the
    reference keywords, which diffusers hands to every attention of a transformer block, so that
    they are accepted silently instead of logging a warning per call."""

    single_token_shortcut = True  # False: always diffusers' path (benchmarks/engine_bench.py's "before")

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None,
                 reference: ReferenceTokens | None = None, record: dict | None = None):
        if (
            self.single_token_shortcut and encoder_hidden_states is not None and encoder_hidden_states.shape[1] == 1 and attention_mask is None
            and hidden_states.ndim == 3 and attn.spatial_norm is None and attn.group_norm is None and not attn.norm_cross
            and not attn.residual_connection and attn.rescale_output_factor == 1.0
        ):
            value = attn.to_v(encoder_hidden_states).to(hidden_states.dtype)  # (n, 1, c)
            # to_out on every token (not once, then broadcast): the same GEMM as diffusers' path, so
            # the result is bit-identical to it
            return attn.to_out[1](attn.to_out[0](value.expand(-1, hidden_states.shape[1], -1).contiguous()))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Module paths of every transformer block's self-attention (attn1), in registration order."""
    return [name for name, module in unet.named_modules() if name.endswith(".attn1") and isinstance(module, Attention)]


def cross_attention_names(unet: torch.nn.Module) -> list[str]:
    return [name for name, module in unet.named_modules() if name.endswith(".attn2") and isinstance(module, Attention)]


def install_reference_attention(reference_unet: torch.nn.Module, denoising_unet: torch.nn.Module) -> int:
    """Put writers on ReferenceNet's attn1s and readers on the denoising UNet's (and the keyword-aware
    cross-attention processor on every attn2); returns the pair count. Processors hold only their
    block's name: the model stays stateless and copyable."""
    ref_names = self_attention_names(reference_unet)
    den_names = self_attention_names(denoising_unet)
    if ref_names != den_names:
        raise ValueError("ReferenceNet and the denoising UNet have different transformer blocks; they cannot be paired")
    for unet, processor in ((reference_unet, ReferenceWriter), (denoising_unet, ReferenceReader)):
        modules = dict(unet.named_modules())
        for name in ref_names:
            modules[name].set_processor(processor(name))
        for name in cross_attention_names(unet):
            modules[name].set_processor(CrossAttention())
    return len(ref_names)


def record_reference(reference_unet: torch.nn.Module, latents: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> ReferenceTokens:
    """Run ReferenceNet on latents (n, 4, h, w) with context (n, tokens, d); returns what its writers
    recorded. Gradients flow when enabled (training stage 1 trains ReferenceNet through them)."""
    record: dict[str, torch.Tensor] = {}
    reference_unet(latents, timestep, encoder_hidden_states=context, cross_attention_kwargs={"record": record}, return_dict=False)
    return ReferenceTokens(record)
