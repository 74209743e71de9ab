"""Search spaces and HAT's 10-key SubTransformer YAML."""

from __future__ import annotations

import hashlib
import random

import pytest

from hat_cli.core.errors import HatError
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.tasks import TASKS

# sha256 of five published files (configs/<task>/subtransformer/HAT_*.yml of mit-han-lab's repository at
# 35d1282), one per task and device family: our writer must reproduce them byte for byte.
PUBLISHED_SHA256 = {
    "HAT_wmt14ende_titanxp@208.1ms_bleu@28.5": "0fabd39d1385df9c32aeb73b4da29fe142b6fbe9480a1074a14ef9461a1ad292",
    "HAT_iwslt14deen_titanxp@109.0ms_bleu@34.5": "4417eb3ddebb28fdb6a4e2074edc21ea33c706615dad884f2def5162c4ebb4f5",
    "HAT_wmt19ende_titanxp@55.7ms_bleu@42.4": "28a287ccdfe6b0da7af67bd596a34baafd221d03ec10234c494c8d3d285daa72",
    "HAT_wmt14enfr_raspberrypi@4.3s_bleu@38.8": "1bcb91e18c2ee5a77f23e534870149c573698fa0aa3f38c42e166602263e6d2d",
    "HAT_wmt14ende_xeon@137.9ms_bleu@25.8": "56c9d83da40032b88112d5b0ea31a6f1d3b864251b4e8ff4bd24e00926fa15fb",
}


def test_published_files_are_reproduced_byte_for_byte(published_models):
    by_name = {e["name"]: e for e in published_models}
    for name, digest in PUBLISHED_SHA256.items():
        text = SubTransformerConfig.from_mapping(by_name[name]["yaml"]).to_yaml()
        assert hashlib.sha256(text.encode()).hexdigest() == digest, name


def test_all_44_published_architectures_round_trip(published_models, tmp_path):
    assert len(published_models) == 44
    for entry in published_models:
        config = SubTransformerConfig.from_mapping(entry["yaml"], entry["name"])
        assert config == SubTransformerConfig.from_nested(config.to_nested())
        path = tmp_path / "arch.yml"
        config.save_yaml(path)
        text = path.read_text()
        again = SubTransformerConfig.from_yaml(path)
        assert again == config
        assert again.to_yaml() == text  # a fixed point: read -> write gives the same bytes
        assert again.to_yaml_mapping() == entry["yaml"]  # same keys and values as the published file


def hat_features(keys: dict) -> list[float]:
    """HAT's ten latency features written out from the published keys (docs/METHOD.md §1.6)."""
    def mean(values):
        return sum(values) / len(values)

    enc, dec = keys["encoder-layer-num-subtransformer"], keys["decoder-layer-num-subtransformer"]
    return [
        keys["encoder-embed-dim-subtransformer"], enc,
        mean(keys["encoder-ffn-embed-dim-all-subtransformer"][:enc]),
        mean(keys["encoder-self-attention-heads-all-subtransformer"][:enc]),
        keys["decoder-embed-dim-subtransformer"], dec,
        mean(keys["decoder-ffn-embed-dim-all-subtransformer"][:dec]),
        mean(keys["decoder-self-attention-heads-all-subtransformer"][:dec]),
        mean(keys["decoder-ende-attention-heads-all-subtransformer"][:dec]),
        mean([{-1: 1, 1: 2, 2: 3}[a] for a in keys["decoder-arbitrary-ende-attn-all-subtransformer"][:dec]]),
    ]


def test_latency_features_match_hat(published_models):
    for entry in published_models:
        features = SubTransformerConfig.from_mapping(entry["yaml"]).features()
        assert features == pytest.approx(hat_features(entry["yaml"]), abs=1e-12)
    # one by hand: HAT_iwslt14deen_titanxp@109.0ms_bleu@34.5 attends to 3, 1 and 1 encoder layers
    first = SubTransformerConfig.from_mapping(published_models[0]["yaml"])
    assert first.features() == pytest.approx([512, 6, 1024, 4, 512, 3, 4096 / 3, 4, 4, 5 / 3])


def test_published_architectures_lie_in_their_spaces(published_models):
    spaces = {t.name: SearchSpace.builtin(t.space) for t in TASKS.values() if t.zoo_key}
    for entry in published_models:
        SubTransformerConfig.from_mapping(entry["yaml"]).validate(spaces[entry["task"]])


def test_out_of_space_value_names_field_and_choices(published_models):
    iwslt_model = SubTransformerConfig.from_mapping(published_models[0]["yaml"])  # FFN 1024 in every encoder layer
    wmt = SearchSpace.builtin("space0")
    narrow = SearchSpace("narrow", wmt.shape, {**wmt.choices, "encoder_ffn_embed_dim": (3072, 2048)})
    with pytest.raises(HatError, match=r"encoder_ffn_embed_dim \(layer 0\) is 1024, outside search space 'narrow', which allows 3072, 2048"):
        iwslt_model.validate(narrow)


@pytest.mark.parametrize(
    "text, message",
    [
        ("encoder-embed-dim-subtransformer: [512\n", "not valid YAML"),
        ("- just a list\n", "must be a YAML mapping"),
        ("encoder-embed-dim-subtransformer: 512\n", "lacks the key"),
    ],
)
def test_malformed_yaml_is_one_clear_error(text, message):
    with pytest.raises(HatError, match=message):
        SubTransformerConfig.from_yaml_text(text, "arch.yml")


def test_short_lists_and_wrong_types_are_rejected(published_models):
    mapping = dict(published_models[0]["yaml"])
    mapping["decoder-ffn-embed-dim-all-subtransformer"] = [1024]
    with pytest.raises(HatError, match="has 1 entries but the model uses 3 layers"):
        SubTransformerConfig.from_mapping(mapping)
    mapping = dict(published_models[0]["yaml"])
    mapping["encoder-embed-dim-subtransformer"] = "512"
    with pytest.raises(HatError, match="must be an integer"):
        SubTransformerConfig.from_mapping(mapping)


def test_longer_lists_are_cut_to_the_layer_count_as_hat_does(published_models):
    mapping = dict(published_models[0]["yaml"])
    mapping["decoder-arbitrary-ende-attn-all-subtransformer"] = [2, -1, -1, 1, 1, 1]
    config = SubTransformerConfig.from_mapping(mapping)
    assert config.decoder_arbitrary_ende_attn == (2, -1, -1)


def test_sampling_is_seeded_uniform_and_in_space():
    space = SearchSpace.builtin("space0")
    first = [space.sample(random.Random(seed)) for seed in range(200)]
    assert first == [space.sample(random.Random(seed)) for seed in range(200)]
    for config in first:
        config.validate(space)
        assert len(config.decoder_arbitrary_ende_attn) == config.decoder_layer_num
    depths = {c.decoder_layer_num for c in first}
    assert depths == {1, 2, 3, 4, 5, 6}


def test_sampler_follows_hats_draw_order():
    # HAT: enc embed, dec embed, enc layers, dec layers, then per layer (ffn, heads), then 6 arbitrary draws.
    space = SearchSpace.builtin("space0")
    rng = random.Random(7)
    c = space.choices
    expected_enc_embed = rng.choice(c["encoder_embed_dim"])
    expected_dec_embed = rng.choice(c["decoder_embed_dim"])
    rng.choice(c["encoder_layer_num"])
    dec_layers = rng.choice(c["decoder_layer_num"])
    config = space.sample(random.Random(7))
    assert (config.encoder_embed_dim, config.decoder_embed_dim, config.decoder_layer_num) == (
        expected_enc_embed,
        expected_dec_embed,
        dec_layers,
    )


@pytest.mark.parametrize("name", ["space0", "space1", "latency", "multi30k", "demo"])
def test_builtin_spaces_load_and_bound_their_choices(name):
    space = SearchSpace.builtin(name)
    assert space.largest().fits(space.shape)
    space.largest().validate(space)
    space.smallest().validate(space)


def test_unknown_space_lists_the_known_ones():
    with pytest.raises(HatError, match="space0"):
        SearchSpace.builtin("nope")
