import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from aa_engine.config import ModelConfig
from aa_engine.models.reference_attention import ReferenceBank, ReferenceReader, install_reference_attention


def _attn():
    torch.manual_seed(0)
    return Attention(query_dim=32, heads=4, dim_head=8).eval()


def test_reader_equals_self_attention_over_own_plus_reference_tokens():
    """The released mechanism: attn1(x, encoder_hidden_states=cat([x, ref per frame])) with attn1's own weights."""
    attn = _attn()
    x, ref = torch.randn(6, 16, 32), torch.randn(1, 10, 32)
    bank = ReferenceBank()
    bank.tokens["b"] = ref
    with torch.no_grad():
        expected = attn(x, encoder_hidden_states=torch.cat([x, ref.expand(6, -1, -1)], dim=1))
        got = ReferenceReader(bank, "b")(attn, x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_unconditional_rows_get_plain_self_attention():
    attn = _attn()
    x, ref = torch.randn(6, 16, 32), torch.randn(1, 10, 32)
    bank = ReferenceBank()
    bank.tokens["b"] = ref
    bank.uncond_rows = 3
    with torch.no_grad():
        got = ReferenceReader(bank, "b")(attn, x)
        plain = attn(x[:3])
        extended = attn(x[3:], encoder_hidden_states=torch.cat([x[3:], ref.expand(3, -1, -1)], dim=1))
    torch.testing.assert_close(got[:3], plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[3:], extended, atol=1e-5, rtol=1e-5)


def test_disabled_bank_is_plain_self_attention():
    attn = _attn()
    x = torch.randn(2, 16, 32)
    bank = ReferenceBank()
    bank.tokens["b"] = torch.randn(1, 10, 32)
    bank.enabled = False
    with torch.no_grad():
        torch.testing.assert_close(ReferenceReader(bank, "b")(attn, x), attn(x), atol=1e-5, rtol=1e-5)


def test_all_16_transformer_blocks_of_sd15_are_paired():
    cfg = ModelConfig.sd15()
    with torch.device("meta"):
        reference, denoising = UNet2DConditionModel(**cfg.unet), UNet2DConditionModel(**cfg.unet)
    assert install_reference_attention(reference, denoising, ReferenceBank()) == 16
