"""Batched greedy/beam search with the incremental cache against a plain reference: fairseq 0.8's
beam search written out sentence by sentence, recomputing the whole prefix every step, on real
random-weight models (several architectures, arbitrary encoder-decoder attention -1/1/2) with
padding in the batch."""

from __future__ import annotations

import math
import random

import pytest
import torch

from hat_cli.model.decoding import EOS, PAD, SearchSettings, beam_search, greedy_search, search
from hat_cli.model.transformer import TransformerModel, extract_subtransformer
from hat_cli.model.space import SearchSpace, SubTransformerConfig

VOCAB = 64


def _model(share: bool, seed: int = 0, src_vocab: int = VOCAB, dtype: torch.dtype = torch.float64) -> TransformerModel:
    """A random demo-space SuperTransformer whose outputs vary (larger weights) and whose EOS is likely
    enough that sentences finish at different steps.

    float64 by default: with such weights fp32 rounding differences between a cached and a recomputed
    step (~1e-6 in the logits) grow to ~1e-5 over 16 steps, which would blur what the comparison checks;
    scores are still accumulated in fp32 as fairseq does.
    """
    torch.manual_seed(seed)
    space = SearchSpace.builtin("demo")
    model = TransformerModel.supertransformer(space.shape, src_vocab if not share else VOCAB, VOCAB, share).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
        model.output_weight()[EOS] *= 2.0
    return model.to(dtype)


def _sources(batch: int, seed: int, vocab: int = VOCAB) -> torch.Tensor:
    """Left-padded sources of different lengths, each ending with EOS (as collate builds them)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 10, (batch,), generator=g).tolist()
    lengths[0] = 10
    width = max(lengths)
    src = torch.full((batch, width), PAD, dtype=torch.long)
    for row, n in enumerate(lengths):
        src[row, width - n : -1] = torch.randint(4, vocab, (n - 1,), generator=g)
        src[row, -1] = EOS
    return src


def _config(arbitrary: list[int], seed: int) -> SubTransformerConfig:
    space = SearchSpace.builtin("demo")
    config = space.sample(random.Random(seed))
    layers = config.decoder_layer_num
    return SubTransformerConfig(**{**config.__dict__, "decoder_arbitrary_ende_attn": tuple((arbitrary * 3)[:layers])})


def reference_search(model, src_row, config, beam, lenpen, max_len, min_len=1):
    """fairseq 0.8's SequenceGenerator for one unpadded sentence, full recompute every step."""
    enc = model.encode(src_row, config)
    vocab = model.tgt_vocab_size
    live = [([EOS], [])]  # (tokens with the leading EOS, cumulative scores per step)
    finalized = []
    for step in range(max_len + 1):
        prefix = torch.tensor([tokens for tokens, _ in live])
        logits = model.decode(prefix, enc.reorder(torch.zeros(len(live), dtype=torch.long)), config)
        lprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        lprobs[:, PAD] = -math.inf
        if step >= max_len:
            keep = lprobs[:, EOS].clone()
            lprobs[:] = -math.inf
            lprobs[:, EOS] = keep
        elif step < min_len:
            lprobs[:, EOS] = -math.inf
        if step == 0:
            totals = lprobs[:1]
        else:
            totals = lprobs + torch.tensor([cum[-1] for _, cum in live], dtype=torch.float32).unsqueeze(1)
        flat = totals.reshape(-1)
        top_scores, top_index = flat.topk(min(2 * beam, flat.numel() - 1))
        candidates = [(s, i // vocab, i % vocab) for s, i in zip(top_scores.tolist(), top_index.tolist())]
        for score, b, token in candidates[:beam]:
            if token == EOS and len(finalized) < beam:
                tokens, cum = live[b]
                cumulative = torch.tensor(cum + [score], dtype=torch.float32)
                positional = cumulative.clone()
                positional[1:] = cumulative[1:] - cumulative[:-1]
                normalised = float(torch.tensor(score, dtype=torch.float32) / (step + 1) ** lenpen)
                finalized.append((tokens[1:] + [EOS], normalised, positional.tolist()))
        if len(finalized) == beam:
            break
        survivors = [(s, b, t) for s, b, t in candidates if t != EOS][:beam]
        live = [(live[b][0] + [t], live[b][1] + [s]) for s, b, t in survivors]
    return sorted(finalized, key=lambda h: h[1], reverse=True)


def _unpadded(src: torch.Tensor, row: int) -> torch.Tensor:
    sentence = src[row]
    return sentence[sentence.ne(PAD)].unsqueeze(0)


def _assert_matches_reference(model, src, config, hyps, beam, lenpen, max_len, min_len=1):
    for row in range(src.size(0)):
        expected = reference_search(model, _unpadded(src, row), config, beam, lenpen, max_len, min_len)
        assert len(expected) == beam
        for k, (tokens, score, positional) in enumerate(expected):
            n = int(hyps.lengths[row, k])
            assert hyps.tokens[row, k, :n].tolist() == tokens, (row, k)
            assert (hyps.tokens[row, k, n:] == PAD).all()
            assert float(hyps.scores[row, k]) == pytest.approx(score, abs=1e-5)
            torch.testing.assert_close(hyps.positional_scores[row, k, :n], torch.tensor(positional), atol=1e-5, rtol=0)


ARCHITECTURES = [
    pytest.param(True, [-1], 0, id="shared-ende-last"),
    pytest.param(True, [1], 1, id="shared-ende-two-layers"),
    pytest.param(False, [2], 2, id="separate-ende-three-layers", marks=pytest.mark.slow),
    pytest.param(False, [2, -1, 1], 5, id="separate-ende-mixed"),
]


@pytest.mark.parametrize("share,arbitrary,seed", ARCHITECTURES)
def test_beam_search_equals_full_recompute_reference(share, arbitrary, seed):
    model = _model(share, seed, src_vocab=50)
    config = _config(arbitrary, seed)
    src = _sources(5, seed, vocab=50 if not share else VOCAB)
    settings = SearchSettings(beam=4, lenpen=0.6, max_len_b=12)
    hyps = beam_search(model, src, config, settings)
    lengths = hyps.lengths[:, 0]
    _assert_matches_reference(model, src, config, hyps, beam=4, lenpen=0.6, max_len=12)
    # The same search without the cache gives the same result.
    recomputed = beam_search(model, src, config, settings, incremental=False)
    assert torch.equal(recomputed.tokens, hyps.tokens)
    torch.testing.assert_close(recomputed.scores, hyps.scores, atol=1e-5, rtol=0)
    # Each sentence translated alone, without padding, gets the same hypotheses.
    for row in range(src.size(0)):
        alone = beam_search(model, _unpadded(src, row), config, settings)
        assert torch.equal(alone.tokens[0], hyps.tokens[row])
        torch.testing.assert_close(alone.scores[0], hyps.scores[row], atol=1e-5, rtol=0)


def test_sentences_finish_at_different_steps():
    """The fixture really exercises sentences leaving the batch early and hitting max_len."""
    model = _model(True, 0)
    hyps = beam_search(model, _sources(8, 3), _config([1], 3), SearchSettings(beam=4, lenpen=0.6, max_len_b=16))
    best = hyps.lengths[:, 0].tolist()
    assert min(best) < 10 and len(set(hyps.lengths.view(-1).tolist())) >= 4


@pytest.mark.parametrize("share,arbitrary,seed", ARCHITECTURES[:2])
def test_greedy_equals_beam_one_and_reference(share, arbitrary, seed):
    model = _model(share, seed, src_vocab=50)
    config = _config(arbitrary, seed)
    src = _sources(6, seed + 10, vocab=50 if not share else VOCAB)
    settings = SearchSettings(beam=1, lenpen=1.0, max_len_b=12)
    greedy = greedy_search(model, src, config, settings)
    one_beam = beam_search(model, src, config, settings)
    assert torch.equal(greedy.tokens, one_beam.tokens)
    assert torch.equal(greedy.lengths, one_beam.lengths)
    torch.testing.assert_close(greedy.scores, one_beam.scores, atol=1e-6, rtol=0)
    _assert_matches_reference(model, src, config, greedy, beam=1, lenpen=1.0, max_len=12)
    recomputed = greedy_search(model, src, config, settings, incremental=False)
    assert torch.equal(recomputed.tokens, greedy.tokens)
    assert search(model, src, config, settings).best() == greedy.best()


def test_compact_subtransformer_searches_like_its_supertransformer():
    model = _model(True, 4)
    config = _config([2, 1, -1], 4)
    compact = extract_subtransformer(model, config).eval()
    src = _sources(5, 4)
    settings = SearchSettings(beam=5, lenpen=1.0, max_len_b=12)
    from_super = beam_search(model, src, config, settings)
    from_compact = beam_search(compact, src, None, settings)
    assert torch.equal(from_super.tokens, from_compact.tokens)
    torch.testing.assert_close(from_super.scores, from_compact.scores, atol=1e-5, rtol=0)
    _assert_matches_reference(compact, src, None, from_compact, beam=5, lenpen=1.0, max_len=12)


def test_length_limits_scores_and_order():
    model = _model(True, 6)
    config = _config([-1], 6)
    src = _sources(6, 6)
    settings = SearchSettings(beam=4, lenpen=0.6, max_len_a=0.5, max_len_b=3, min_len=3)
    max_len = int(0.5 * src.size(1) + 3)
    hyps = beam_search(model, src, config, settings)
    assert hyps.tokens.size(-1) == max_len + 1
    assert hyps.lengths.min() >= settings.min_len + 1 and hyps.lengths.max() <= max_len + 1
    assert hyps.steps <= max_len + 1
    ends = hyps.tokens.gather(2, (hyps.lengths - 1).unsqueeze(-1)).squeeze(-1)
    assert (ends == EOS).all()
    assert not (hyps.tokens == PAD).logical_and(torch.arange(max_len + 1) < hyps.lengths.unsqueeze(-1)).any()
    # score = summed positional scores / length ** lenpen, best first
    summed = hyps.positional_scores.sum(-1)
    torch.testing.assert_close(hyps.scores, summed / hyps.lengths.float() ** 0.6, atol=1e-5, rtol=0)
    assert (hyps.scores[:, :-1] >= hyps.scores[:, 1:]).all()
    _assert_matches_reference(model, src, config, hyps, beam=4, lenpen=0.6, max_len=max_len, min_len=3)


def test_search_leaves_training_mode_alone_and_batch_independence():
    model = _model(True, 7).train()
    config = _config([1], 7)
    src = _sources(6, 7)
    settings = SearchSettings(beam=4, lenpen=0.6, max_len_b=14)
    together = beam_search(model, src, config, settings)
    assert model.training
    # Translating sentences in another batch composition gives the same hypotheses.
    for rows in ([0, 1, 2], [3, 4, 5]):
        part = src[rows]
        part = part[:, part.ne(PAD).any(0)]  # drop all-pad columns
        alone = beam_search(model, part, config, settings)
        assert alone.best() == [together.best()[r] for r in rows]


def test_float32_cache_agrees_with_recompute():
    model = _model(False, 9, src_vocab=50, dtype=torch.float32)
    config = _config([2, 1], 9)
    src = _sources(8, 9, vocab=50)
    settings = SearchSettings(beam=4, lenpen=0.6, max_len_b=12)
    cached = beam_search(model, src, config, settings)
    recomputed = beam_search(model, src, config, settings, incremental=False)
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.scores, recomputed.scores, atol=1e-4, rtol=0)


def test_bf16_autocast_runs_on_cpu():
    model = _model(True, 8)
    hyps = beam_search(model, _sources(3, 8), _config([1], 8), SearchSettings(beam=2, max_len_b=6), autocast_dtype=torch.bfloat16)
    assert hyps.tokens.shape == (3, 2, 7)
    assert torch.isfinite(hyps.scores).all()
