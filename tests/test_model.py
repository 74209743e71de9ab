"""The SuperTransformer, standalone SubTransformers and incremental decoding (docs/METHOD.md §2, §9.3)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from hat_cli.model.transformer import DecoderCache, TransformerModel, extract_subtransformer, sinusoid_table, skip_init
from hat_cli.model.space import SearchSpace, SubTransformerConfig

VOCAB = 96  # small tables keep the test fast; every code path is the same as with 32k entries


def _batch(vocab_src: int, vocab_tgt: int, seed: int = 0, src_len: int = 9, tgt_len: int = 7):
    """Three sentences with left-padded sources and right-padded targets, as fairseq collates them."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab_src, (3, src_len), generator=g)
    src[0, :3] = 1
    src[1, :1] = 1
    src[:, -1] = 2
    tgt = torch.randint(4, vocab_tgt, (3, tgt_len), generator=g)
    tgt[:, 0] = 2
    tgt[2, -2:] = 1
    return src, tgt


@pytest.fixture(scope="module")
def supernets():
    torch.manual_seed(0)
    wmt = TransformerModel.supertransformer(SearchSpace.builtin("space0").shape, VOCAB, VOCAB, True).eval()
    iwslt = TransformerModel.supertransformer(SearchSpace.builtin("space1").shape, VOCAB, VOCAB - 20, False).eval()
    return {"wmt": wmt, "iwslt": iwslt}


def _assert_extraction_equal(model: TransformerModel, config: SubTransformerConfig, seed: int) -> None:
    src, tgt = _batch(model.src_vocab_size, model.tgt_vocab_size, seed)
    with torch.no_grad():
        expected = model(src, tgt, config)
        compact = extract_subtransformer(model, config)
        got = compact(src, tgt)
    assert compact.is_compact
    keep = tgt.ne(1)
    assert (got - expected)[keep].abs().max().item() <= 1e-5
    # The compact model holds only what the architecture uses.
    assert len(compact.encoder.layers) == config.encoder_layer_num
    assert len(compact.decoder.layers) == config.decoder_layer_num
    assert compact.decoder.layers[0].fc1.weight.shape == (config.decoder_ffn_embed_dim[0], config.decoder_embed_dim)


@pytest.mark.slow
def test_extraction_equals_supertransformer_for_all_published_architectures(supernets, published_models):
    for i, entry in enumerate(published_models):
        config = SubTransformerConfig.from_mapping(entry["yaml"])
        model = supernets["iwslt" if entry["task"].startswith("iwslt") else "wmt"]
        _assert_extraction_equal(model, config, seed=i)


def test_extraction_equals_supertransformer_for_random_samples(supernets):
    rng = random.Random(5)
    for name, space_name in (("wmt", "space0"), ("iwslt", "space1")):
        space = SearchSpace.builtin(space_name)
        for k in range(4):
            _assert_extraction_equal(supernets[name], space.sample(rng), seed=k)


def test_incremental_decoding_equals_full_recompute(supernets):
    rng = random.Random(11)
    space = SearchSpace.builtin("space0")
    configs = [space.sample(rng) for _ in range(3)]
    configs.append(configs[0].__class__(**{**configs[0].__dict__, "decoder_arbitrary_ende_attn": (2,) * configs[0].decoder_layer_num}))
    for config in configs:
        model = extract_subtransformer(supernets["wmt"], config)
        src, tgt = _batch(VOCAB, VOCAB, seed=3)
        tgt[2, -2:] = 9  # the full prefix is fed step by step: no pads inside
        with torch.no_grad():
            full = model(src, tgt)
            enc = model.encode(src)
            cache = DecoderCache()
            steps = [model.decode(tgt[:, : t + 1], enc, cache=cache) for t in range(tgt.size(1))]
        assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-5


def test_cache_reorder_follows_the_beam(supernets):
    model = extract_subtransformer(supernets["iwslt"], SearchSpace.builtin("space1").smallest())
    src, tgt = _batch(VOCAB, VOCAB - 20, seed=4)
    tgt[2, -2:] = 9
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        enc = model.encode(src)
        cache = DecoderCache()
        model.decode(tgt[:, :1], enc, cache=cache)
        model.decode(tgt[:, :2], enc, cache=cache)
        cache.reorder(order)
        step = model.decode(tgt[order, :3], enc.reorder(order), cache=cache)
        full = model(src[order], tgt[order, :3])
    assert (step[:, 0] - full[:, -1]).abs().max().item() <= 1e-5


def test_state_dict_names_and_shapes_are_hats():
    with skip_init():
        wmt = TransformerModel.supertransformer(SearchSpace.builtin("space0").shape, 32768, 32768, True)
        iwslt = TransformerModel.supertransformer(SearchSpace.builtin("space1").shape, 8848, 6632, False)
    wmt_state, iwslt_state = wmt.state_dict(), iwslt.state_dict()
    # HAT's 186 / 187 keys minus the two `version` and two `_float_tensor` buffers.
    assert len(wmt_state) == 182 and len(iwslt_state) == 183
    assert wmt_state["encoder.layers.0.self_attn.in_proj_weight"].shape == (1536, 640)
    assert wmt_state["encoder.layers.5.self_attn.out_proj.weight"].shape == (640, 512)
    assert wmt_state["decoder.layers.3.encoder_attn.in_proj_bias"].shape == (1536,)
    assert wmt_state["decoder.layers.3.fc1.weight"].shape == (3072, 640)
    assert iwslt_state["decoder.embed_out"].shape == (6632, 640)
    assert iwslt_state["encoder.layers.0.fc2.weight"].shape == (640, 2048)
    # Parameter totals of docs/METHOD.md §9.2 (a shared table counts once).
    assert sum(p.numel() for p in wmt.parameters()) == 91_872_512
    assert sum(p.numel() for n, p in wmt.named_parameters() if "embed" not in n) == 70_900_992
    assert sum(p.numel() for p in iwslt.parameters()) == 69_311_744
    assert sum(p.numel() for n, p in iwslt.named_parameters() if "embed" not in n) == 55_160_064


def test_sinusoid_is_built_at_super_width_then_sliced():
    table = sinusoid_table(40, 640)
    assert torch.all(table[1] == 0)  # padding row
    half = 320
    freq = math.exp(-1 * math.log(10000) / (half - 1))
    assert table[5, 1].item() == pytest.approx(math.sin(5 * freq), abs=1e-6)
    assert table[5, half + 1].item() == pytest.approx(math.cos(5 * freq), abs=1e-6)
    native = sinusoid_table(40, 512)
    assert not torch.allclose(table[:, :512], native)  # a native 512-wide table would differ


def test_positions_count_from_the_first_real_token(supernets):
    positions = supernets["wmt"].encoder.embed_positions
    tokens = torch.tensor([[1, 1, 5, 6, 2], [5, 6, 7, 8, 2]])
    got = positions(tokens, 640)
    table = sinusoid_table(10, 640)
    assert torch.equal(got[0, 2], table[2]) and torch.equal(got[1, 0], table[2])
    assert torch.all(got[0, :2] == 0)


def test_dropout_is_scaled_by_width_with_the_published_quirk_as_an_option():
    space = SearchSpace.builtin("space0")
    model = TransformerModel.subtransformer(space.smallest(), space.shape, 16, 16, True, dropout=0.3).train()
    drop = model._dropouts(512, 640)
    assert drop.residual == pytest.approx(0.24) and drop.encoder_self_attn_residual == pytest.approx(0.24)
    model.hat_dropout_quirk = True
    assert model._dropouts(512, 640).encoder_self_attn_residual == pytest.approx(0.3)
    assert model.eval()._dropouts(512, 640).attention == 0.0


def test_bf16_autocast_runs_and_stays_close(supernets):
    model = extract_subtransformer(supernets["wmt"], SearchSpace.builtin("space0").smallest())
    src, tgt = _batch(VOCAB, VOCAB, seed=8)
    with torch.no_grad():
        reference = model(src, tgt).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(src, tgt).float()
    keep = tgt.ne(1)
    relative = (low - reference)[keep].norm() / reference[keep].norm()
    assert relative < 2e-2


def test_a_model_too_small_for_the_architecture_is_refused(supernets):
    small = extract_subtransformer(supernets["wmt"], SearchSpace.builtin("space0").smallest())
    with pytest.raises(ValueError, match="too small"):
        small(*_batch(VOCAB, VOCAB), SearchSpace.builtin("space0").largest())
