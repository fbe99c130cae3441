import copy

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from aa_engine.config import ModelConfig
from aa_engine.models.reference_attention import ReferenceReader, ReferenceTokens, install_reference_attention


def _attn():
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def test_reader_equals_self_attention_over_own_plus_reference_tokens():
    """The released mechanism: attn1(x, encoder_hidden_states=cat([x, ref per frame])) with attn1's own weights."""
    attn = _attn()
    x, ref = torch.randn(6, 16, 32), torch.randn(1, 10, 32)
    with torch.no_grad():
        expected = attn(x, encoder_hidden_states=torch.cat([x, ref.expand(6, -1, -1)], dim=1))
        got = ReferenceReader("b")(attn, x, reference=ReferenceTokens({"b": ref}))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_unconditional_rows_get_plain_self_attention():
    attn = _attn()
    x, ref = torch.randn(6, 16, 32), torch.randn(1, 10, 32)
    with torch.no_grad():
        got = ReferenceReader("b")(attn, x, reference=ReferenceTokens({"b": ref}, uncond_rows=3))
        plain = attn(x[:3])
        extended = attn(x[3:], encoder_hidden_states=torch.cat([x[3:], ref.expand(3, -1, -1)], dim=1))
    torch.testing.assert_close(got[:3], plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[3:], extended, atol=1e-5, rtol=1e-5)


def test_no_reference_is_plain_self_attention():
    attn = _attn()
    x = torch.randn(2, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(ReferenceReader("b")(attn, x), attn(x), atol=1e-5, rtol=1e-5)
        # tokens recorded for other blocks only: this block reads none
        other = ReferenceTokens({"a": torch.randn(1, 10, 32)})
        torch.testing.assert_close(ReferenceReader("b")(attn, x, reference=other), attn(x), atol=1e-5, rtol=1e-5)


def test_several_references_each_cover_their_own_rows():
    """Training batches hold several videos: reference i is read by rows i*f .. (i+1)*f - 1."""
    attn = _attn()
    x, refs = torch.randn(4, 16, 32), torch.randn(2, 10, 32)
    with torch.no_grad():
        got = ReferenceReader("b")(attn, x, reference=ReferenceTokens({"b": refs}))
        first = ReferenceReader("b")(attn, x[:2], reference=ReferenceTokens({"b": refs[:1]}))
        second = ReferenceReader("b")(attn, x[2:], reference=ReferenceTokens({"b": refs[1:]}))
    torch.testing.assert_close(got, torch.cat([first, second]), atol=1e-6, rtol=0)


def test_all_16_transformer_blocks_of_sd15_are_paired():
    cfg = ModelConfig.sd15()
    with torch.device("meta"):
        reference, denoising = UNet2DConditionModel(**cfg.unet), UNet2DConditionModel(**cfg.unet)
    assert install_reference_attention(reference, denoising) == 16


def test_reference_tokens_are_returned_not_stored(tiny_model):
    """ReferenceNet's tokens come back from the call (one per transformer block, (1, tokens, c));
    nothing is left on the model, so two references can be in use at once."""
    torch.manual_seed(0)
    latents, context = torch.randn(1, 4, 8, 8), torch.randn(1, 1, 32)
    with torch.no_grad():
        a = tiny_model.reference_tokens(latents, context)
        b = tiny_model.reference_tokens(latents + 1, context)
    assert len(a.tokens) == tiny_model.num_reference_blocks == 4  # down, mid, 2 up
    assert all(t.shape[0] == 1 and t.ndim == 3 for t in a.tokens.values())
    assert all(not torch.equal(a.tokens[k], b.tokens[k]) for k in a.tokens)
    processors = [m.processor for m in tiny_model.modules() if isinstance(m, Attention)]
    assert all(not any(isinstance(v, (torch.Tensor, dict)) for v in vars(p).values()) for p in processors)
    assert not hasattr(tiny_model, "bank") and not hasattr(tiny_model.denoising_unet, "video_state")


def test_the_model_can_be_deep_copied(tiny_model, reference_image, pose_images):
    """A deep copy is a separate, working model: same output, and changing the copy's weights
    leaves the original alone (nothing in the copy points back into the original)."""
    from aa_engine.config import GenerationConfig
    from aa_engine.pipeline import AnimateAnyonePipeline

    config = GenerationConfig(width=64, height=64, steps=1)
    original = AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:2], config)
    twin = copy.deepcopy(tiny_model)
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(twin.parameters(), tiny_model.parameters()))
    copied = AnimateAnyonePipeline(twin)(reference_image, pose_images[:2], config)
    assert all((a == b).all() for a, b in zip(original, copied))
    with torch.no_grad():
        for module in twin.motion_modules():
            module.temporal_transformer.proj_out.weight.mul_(3)
    changed = AnimateAnyonePipeline(twin)(reference_image, pose_images[:2], config)
    again = AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:2], config)
    assert any((a != b).any() for a, b in zip(original, changed))
    assert all((a == b).all() for a, b in zip(original, again))
