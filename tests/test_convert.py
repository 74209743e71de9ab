"""`hat zoo convert`: original HAT checkpoints (docs/METHOD.md §9) read safely and turned into compact models
whose outputs equal the original SuperTransformer running that architecture."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_convert_fixtures import Malicious, write_original_checkpoint, write_zoo_table  # noqa: E402

from hat_cli.core import paths  # noqa: E402
from hat_cli.core.errors import HatError  # noqa: E402
from hat_cli.model.transformer import TransformerModel  # noqa: E402
from hat_cli.model.directory import load_model  # noqa: E402
from hat_cli.model.space import SubTransformerConfig, SuperShape  # noqa: E402
from hat_cli.zoo import catalogue, convert  # noqa: E402

# Small shapes with the published structure: WMT-like (shared table, 8 heads) and IWSLT-like
# (separate tables + decoder.embed_out, 4 heads); the real sizes (docs/METHOD.md §9.2) run in the slow tests.
SMALL_WMT = SuperShape(64, 64, 96, 96, 6, 6, 8, 8, 64)
SMALL_IWSLT = SuperShape(64, 64, 64, 64, 6, 6, 4, 4, 64)


def small_arch(arbitrary=(-1, 1, 2), heads=(8, 4, 8), e=48, d=48, ffn=64) -> SubTransformerConfig:
    return SubTransformerConfig(
        encoder_embed_dim=e,
        decoder_embed_dim=d,
        encoder_layer_num=6,
        decoder_layer_num=3,
        encoder_ffn_embed_dim=(ffn, 32, ffn, 32, ffn, ffn),
        encoder_self_attention_heads=tuple(heads[i % 3] for i in range(6)),
        decoder_ffn_embed_dim=(ffn, 32, ffn),
        decoder_self_attention_heads=heads,
        decoder_ende_attention_heads=tuple(reversed(heads)),
        decoder_arbitrary_ende_attn=arbitrary,
    )


def fp16_rounded(model: TransformerModel) -> TransformerModel:
    """The super model as the fp16 checkpoint stores it (what the converted model must reproduce)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model.eval()


def tokens(vocab: int, batch: int = 3, length: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (batch, length), generator=g)
    src[0, :2] = 1  # a left-padded source
    prev = torch.randint(4, vocab, (batch, length - 2), generator=g)
    prev[:, 0] = 2
    return src, prev


def assert_same_outputs(reference: TransformerModel, arch, directory: Path, vocab: int) -> None:
    """``vocab``: a bound valid on both sides."""
    converted, meta = load_model(directory)
    src, prev = tokens(vocab)
    with torch.no_grad():
        expected = reference(src, prev, arch)
        got = converted(src, prev)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def wmt_super():
    torch.manual_seed(0)
    return fp16_rounded(TransformerModel.supertransformer(SMALL_WMT, 40, 40, True))


@pytest.fixture(scope="module")
def iwslt_super():
    torch.manual_seed(1)
    return fp16_rounded(TransformerModel.supertransformer(SMALL_IWSLT, 37, 29, False))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
def test_wmt_shape_fp16_converts_to_equal_compact_model(tmp_path, wmt_super, legacy):
    ckpt = write_original_checkpoint(tmp_path / "ckpt.pt", wmt_super, legacy=legacy, fp16=True)
    arch = small_arch()
    result = convert.convert_original(ckpt, tmp_path / "out", arch=arch)
    assert result["kind"] == "subtransformer" and result["task"] == "wmt14.en-de"
    assert_same_outputs(wmt_super, arch, tmp_path / "out", 40)
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["kind"] == "subtransformer" and meta["converted_from"]["dtype"] == "float16"
    assert meta["hyperparameters"]["dropout"] == 0.3
    # compact: the weights hold only the architecture's slices
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert weights["encoder.layers.1.fc1.weight"].shape == (32, 48)
    assert weights["encoder.layers.0.self_attn.in_proj_weight"].shape == (3 * 64, 48)
    assert "decoder.layers.3.fc1.weight" not in weights and "decoder.embed_out" not in weights


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
def test_iwslt_shape_converts_to_equal_compact_model(tmp_path, iwslt_super, legacy):
    ckpt = write_original_checkpoint(
        tmp_path / "ckpt.pt", iwslt_super, legacy=legacy, fp16=False,
        arch_name="transformersuper_iwslt_de_en", data="data/binary/iwslt14_de_en",
    )
    arch = small_arch(arbitrary=(2, -1, 1), heads=(4, 2, 4), e=64, d=48)
    result = convert.convert_original(ckpt, tmp_path / "out", arch=arch)
    assert result["task"] == "iwslt14.de-en"
    assert_same_outputs(iwslt_super, arch, tmp_path / "out", 29)
    weights_meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert weights_meta["share_all_embeddings"] is False and weights_meta["tgt_vocab_size"] == 29


def test_supertransformer_checkpoint_converts_to_supertransformer(tmp_path, wmt_super):
    ckpt = write_original_checkpoint(tmp_path / "super.pt", wmt_super, legacy=True)
    result = convert.convert_original(ckpt, tmp_path / "out")
    assert result["kind"] == "supertransformer"
    model, meta = load_model(tmp_path / "out")
    assert meta["kind"] == "supertransformer" and model.super_shape == SMALL_WMT
    arch = small_arch()
    src, prev = tokens(40)
    with torch.no_grad():
        torch.testing.assert_close(model(src, prev, arch), wmt_super(src, prev, arch), rtol=1e-5, atol=1e-5)


def test_architecture_recorded_in_args_is_used_without_arch(tmp_path, wmt_super):
    arch = small_arch(arbitrary=(1, 1, -1))
    ckpt = write_original_checkpoint(tmp_path / "sub.pt", wmt_super, legacy=True, sub_config=arch)
    result = convert.convert_original(ckpt, tmp_path / "out")
    assert result["kind"] == "subtransformer"
    assert SubTransformerConfig.from_mapping(result["arch"]) == arch
    assert_same_outputs(wmt_super, arch, tmp_path / "out", 40)


def test_meters_namespace_and_optimizer_state_load_without_fairseq(tmp_path, wmt_super, monkeypatch):
    ckpt = write_original_checkpoint(tmp_path / "c.pt", wmt_super, legacy=True)
    # Make fairseq unimportable while loading (CI installs the real one for the interop tests).
    for name in ("fairseq", "fairseq.meters"):
        monkeypatch.setitem(sys.modules, name, None)
    loaded = convert.load_restricted(ckpt)
    meters = loaded["extra_state"]["train_meters"]
    assert isinstance(meters["train_loss"], convert.AverageMeterRecord) and meters["train_loss"].avg == 3.25
    assert isinstance(meters["wps"], convert.TimeMeterRecord) and meters["wps"].n == 1234
    assert isinstance(meters["wall"], convert.StopwatchMeterRecord) and meters["wall"].sum == 10.5
    assert loaded["args"].arch == "transformersuper_wmt_en_de"
    assert loaded["last_optimizer_state"]["param_groups"][0]["betas"] == (0.9, 0.98)
    assert loaded["model"]["encoder.layers.0.fc1.weight"].dtype == torch.float16


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-format", "zip-format"])
def test_malicious_global_is_refused_and_nothing_runs(tmp_path, wmt_super, legacy):
    marker = tmp_path / "PWNED"
    ckpt = write_original_checkpoint(
        tmp_path / "evil.pt", wmt_super, legacy=legacy, extra={"extra_state": {"x": Malicious(marker)}}
    )
    with pytest.raises(HatError, match=r"posix\.system|os\.system") as info:
        convert.convert_original(ckpt, tmp_path / "out", arch=small_arch())
    assert "nothing from the file was executed" in str(info.value)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_unknown_fairseq_class_is_refused(tmp_path):
    import types

    module = types.ModuleType("fairseq.tasks")

    class TranslationTask:
        pass

    TranslationTask.__module__ = "fairseq.tasks"
    TranslationTask.__qualname__ = "TranslationTask"
    module.TranslationTask = TranslationTask
    sys.modules["fairseq"], sys.modules["fairseq.tasks"] = types.ModuleType("fairseq"), module
    try:
        torch.save({"model": {}, "task": TranslationTask()}, tmp_path / "t.pt")  # protocol 2, as fairseq wrote
    finally:
        del sys.modules["fairseq.tasks"], sys.modules["fairseq"]
    with pytest.raises(HatError, match="fairseq.tasks.TranslationTask"):
        convert.load_restricted(tmp_path / "t.pt")


def test_not_a_checkpoint_and_wrong_shapes_are_clean_errors(tmp_path, wmt_super):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch file")
    with pytest.raises(HatError, match="not a readable PyTorch checkpoint"):
        convert.read_original(junk)
    with pytest.raises(HatError, match="does not exist"):
        convert.read_original(tmp_path / "missing.pt")
    ckpt = write_original_checkpoint(tmp_path / "c.pt", wmt_super, legacy=False)
    with pytest.raises(HatError, match="not the published"):
        convert.read_original(ckpt, expected_shape=SuperShape())
    too_wide = small_arch(e=128)
    with pytest.raises(HatError, match="does not fit"):
        convert.convert_original(ckpt, tmp_path / "out", arch=too_wide)


def test_cli_convert_names_from_file_and_refuses_malicious(tmp_path, wmt_super, monkeypatch):
    from typer.testing import CliRunner

    from hat_cli.cli.app import app

    ckpt = write_original_checkpoint(tmp_path / "c.pt", wmt_super, legacy=True)
    arch_yaml = tmp_path / "arch.yml"
    small_arch().save_yaml(arch_yaml)
    runner = CliRunner()
    result = runner.invoke(app, ["zoo", "convert", str(ckpt), "--arch", str(arch_yaml), "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "subtransformer" and doc["arch"]["decoder-arbitrary-ende-attn-all-subtransformer"] == [-1, 1, 2]
    assert_same_outputs(wmt_super, small_arch(), tmp_path / "out", 40)

    marker = tmp_path / "PWNED"
    evil = write_original_checkpoint(tmp_path / "evil.pt", wmt_super, legacy=True, extra={"args": Malicious(marker)})
    result = runner.invoke(app, ["zoo", "convert", str(evil), "-o", str(tmp_path / "out2")])
    assert result.exit_code == 2 and "posix.system" in result.output
    assert not marker.exists()


def test_published_predictor_file_reads_safely(tmp_path):
    import collections

    layers = collections.OrderedDict(
        [("first_layer.weight", torch.randn(400, 10)), ("first_layer.bias", torch.randn(400))]
        + [(f"layers.{i}.{p}", torch.randn(400, 400) if p == "weight" else torch.randn(400)) for i in range(3) for p in ("weight", "bias")]
        + [("predict.weight", torch.randn(1, 400)), ("predict.bias", torch.randn(1))]
    )
    path = tmp_path / "wmt14ende_cpu_xeon.pt"
    torch.save(layers, path, _use_new_zipfile_serialization=False)
    state = convert.read_original_predictor(path)
    assert list(state) == list(layers) and torch.equal(state["predict.bias"], layers["predict.bias"])
    with pytest.raises(HatError, match="not a HAT latency predictor"):
        torch.save({"x": torch.zeros(2)}, tmp_path / "other.pt")
        convert.read_original_predictor(tmp_path / "other.pt")


# ------------------------------------------------------------------------------------ full size
@pytest.mark.slow
@pytest.mark.parametrize(
    "zoo_name, vocab, share, legacy",
    [
        ("HAT_wmt14ende_xeon@204.2ms_bleu@27.6", (512, 512), True, True),
        ("HAT_iwslt14deen_titanxp@109.0ms_bleu@34.5", (600, 400), False, False),
    ],
    ids=["wmt-super-shape", "iwslt-super-shape"],
)
def test_published_shapes_convert_exactly(tmp_path, zoo_name, vocab, share, legacy):
    """The real super shapes (docs/METHOD.md §9.2) (640 wide, FFN 3072/2048, 6+6 layers, Q 512), a published architecture."""
    entry = catalogue.resolve(zoo_name)
    torch.manual_seed(2)
    model = fp16_rounded(TransformerModel.supertransformer(entry.super_shape, vocab[0], vocab[1], share))
    expected_keys = 186 if share else 187  # docs/METHOD.md §9.2, version and _float_tensor buffers included
    ckpt = write_original_checkpoint(
        tmp_path / f"{zoo_name}.pt", model, legacy=legacy, fp16=share,
        arch_name=entry.labels["hat_arch"], data="data/binary/" + ("wmt16_en_de" if share else "iwslt14_de_en"),
        with_optimizer=False,
    )
    raw = convert.load_restricted(ckpt)
    assert len(raw["model"]) == expected_keys
    del raw
    # the file is named like the published one: the zoo supplies the architecture and checks the shape
    result = convert.convert_original(ckpt, tmp_path / "out", arch=entry.architecture(), expected_shape=entry.super_shape)
    assert result["super_shape"] == entry.super_shape.to_dict()
    assert_same_outputs(model, entry.architecture(), tmp_path / "out", min(vocab))


def test_cli_convert_takes_architecture_from_zoo_entry_named_like_the_file(tmp_path, wmt_super, monkeypatch):
    from typer.testing import CliRunner

    from hat_cli.cli.app import app

    name = "HAT_small_xeon@1.0ms_bleu@1.0"
    arch = small_arch(arbitrary=(2, 1, -1))
    table = write_zoo_table(tmp_path, name, arch, SMALL_WMT)
    monkeypatch.setenv(paths.ZOO_FILE_ENV, str(table))
    ckpt = write_original_checkpoint(tmp_path / f"{name}.pt", wmt_super, legacy=True, data="elsewhere")
    result = CliRunner().invoke(app, ["zoo", "convert", str(ckpt), "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out" / "config.json").read_text())
    assert meta["zoo_name"] == name and meta["task"] == "wmt14.en-de"
    assert_same_outputs(wmt_super, arch, tmp_path / "out", 40)
