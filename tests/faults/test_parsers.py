"""Every parser of outside input either parses or raises HatError (property-based, with hypothesis).

Outside input is whatever a user, a download or a damaged disk hands hat: latency strings, architecture
YAML, search-space YAML, latency CSV rows, predictor files, safetensors headers, fairseq index headers,
dictionaries and model config.json files. For each, hypothesis generates inputs near the valid ones
(structure kept, values broken) and far from them (arbitrary bytes); any other exception is a bug, since
the CLI would show it as a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hat_cli.cli.console import MAX_LATENCY_MS, parse_latency
from hat_cli.core.errors import HatError
from hat_cli.core.tensors import load_tensors
from hat_cli.data.dictionary import Dictionary
from hat_cli.data.indexed import MMAP_MAGIC, IndexedDataset
from hat_cli.latency.dataset import config_columns, header_for, read_latency_csv, sample_config
from hat_cli.latency.predictors.base import LatencyRows
from hat_cli.latency.predictors.fitting import load_predictor
from hat_cli.model.directory import build_from_metadata, check_model_config, read_metadata
from hat_cli.model.space import YAML_KEYS, SearchSpace, SubTransformerConfig

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SPACE = SearchSpace.builtin("demo")

# Values of every JSON/YAML kind, small and absurd.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                      max_leaves=12)


def parses_or_refuses(parse, *args):
    """Run ``parse``; a HatError is a proper refusal, any other exception fails the test."""
    try:
        return parse(*args)
    except HatError as exc:
        assert str(exc).strip(), "a HatError must carry its sentence"
        return None


# ------------------------------------------------------------------------------------------ latency
@FAST
@given(st.one_of(
    st.text(max_size=20),
    st.builds(lambda n, unit: f"{n}{unit}", st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**30), 10**400),
              st.sampled_from(["", "ms", "s", " ms", "MS", "sec", "m"])),
))
@example("1e999ms")
@example("1e400")
def test_latency_strings(text):
    value = parses_or_refuses(parse_latency, text)
    if value is not None:
        assert math.isfinite(value) and 0 < value <= MAX_LATENCY_MS


# ------------------------------------------------------------------------------------------ YAML
arch_mappings = st.fixed_dictionaries({key: values for key in YAML_KEYS}) | st.dictionaries(st.sampled_from(YAML_KEYS), values)


@FAST
@given(st.one_of(st.text(max_size=200), arch_mappings.map(lambda m: yaml.safe_dump(m, allow_unicode=True))))
@example(yaml.safe_dump(SPACE.largest().to_yaml_mapping()))
@example("encoder-embed-dim-subtransformer: [512\n")
def test_architecture_yaml(text):
    config = parses_or_refuses(SubTransformerConfig.from_yaml_text, text, "arch.yml")
    if config is not None:  # what parsed is usable: features and the YAML round trip work
        assert len(config.features()) == 10
        assert SubTransformerConfig.from_yaml_text(config.to_yaml()) == config


@FAST
@given(st.dictionaries(st.sampled_from(sorted(yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yml").read_text()))),
                       values, max_size=20), st.booleans())
def test_search_space_yaml(tmp_path, mapping, from_demo):
    base = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yml").read_text()) if from_demo else {}
    path = tmp_path / "space.yml"
    path.write_text(yaml.safe_dump({**base, **mapping}))
    space = parses_or_refuses(SearchSpace.from_yaml, path)
    if space is not None:  # a space that loads can be sampled
        import random

        space.sample(random.Random(0)).validate(space)


# ------------------------------------------------------------------------------------------ latency CSV
def _csv_row(index: int) -> dict:
    row = config_columns(sample_config(SPACE, 1, index), SPACE)
    row.update(latency_mean_encoder=1.5, latency_mean_decoder=3.0, latency_std_encoder=0.1, latency_std_decoder=0.2,
               hardware="cpu", device="cpu", precision="fp32", mode="inference", threads=1, repetitions=1, instances=1,
               torch_version="x", timestamp="t", task="demo", seed=1, sample_index=index, reference=0)
    return row


cells = st.one_of(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8), st.sampled_from(
    ["nan", "inf", "-inf", "-1", "0", "1e9", "1e400", "7", "2.5", "", "-0", "99999999999999999999"]))


@FAST
@given(st.lists(st.dictionaries(st.sampled_from(header_for(SPACE)), cells, max_size=4), min_size=1, max_size=4),
       st.binary(max_size=40), st.booleans())
def test_latency_csv_rows(tmp_path, damage, tail, torn):
    header = header_for(SPACE)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for i, changes in enumerate(damage):
        row = {**_csv_row(i), **changes}
        writer.writerow([row.get(c, "") for c in header])
    path = tmp_path / "lat.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8", "surrogatepass") + (tail if torn else b""))
    table = parses_or_refuses(read_latency_csv, path)
    if table is not None:
        rows = parses_or_refuses(LatencyRows.from_table, table)
        if rows is not None:
            assert np.all(np.isfinite(rows.total_ms)) and np.all(rows.total_ms > 0)


@FAST
@given(st.binary(max_size=400))
def test_latency_csv_bytes(tmp_path, data):
    path = tmp_path / "lat.csv"
    path.write_bytes(data)
    parses_or_refuses(read_latency_csv, path)


# ------------------------------------------------------------------------------------------ predictors
@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    from hat_cli.latency.predictors.fitting import fit_predictor

    configs = [sample_config(SPACE, 1, i) for i in range(40)]
    rows = LatencyRows.from_configs(configs)
    rows.encoder_ms = np.array([1 + c.encoder_layer_num * 0.5 for c in configs])
    rows.decoder_ms = np.array([2 + sum(c.decoder_ffn_embed_dim) / 100 for c in configs])
    out = tmp_path_factory.mktemp("predictor") / "p"
    fit_predictor(rows, "layer-cost", 300.0, 1).save(out)
    return out


@FAST
@given(st.dictionaries(st.sampled_from(["format", "kind", "lat_norm", "feature_set", "knots", "alpha", "timed_shape",
                                        "training", "feature_norm", "fallback_alpha", "version"]), values, max_size=3),
       st.lists(st.sampled_from(["format", "kind", "lat_norm", "knots", "alpha", "feature_set"]), max_size=2))
def test_predictor_json(tmp_path, fitted, changes, dropped):
    import shutil

    target = tmp_path / "p"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(fitted, target)
    meta = json.loads((target / "predictor.json").read_text())
    meta.update(changes)
    for key in dropped:
        meta.pop(key, None)
    (target / "predictor.json").write_text(json.dumps(meta))
    found = parses_or_refuses(load_predictor, target)
    if found is not None:  # a predictor that loads is refused by the probe every command makes before use
        from hat_cli import resolve  # (resolve.check_predictor), or it predicts finite numbers

        try:
            resolve.check_predictor(found, str(target), resolve.task("demo"), SPACE)
        except HatError:
            return
        predicted = found.predict([SPACE.smallest(), SPACE.largest()])
        assert len(predicted) == 2 and all(math.isfinite(float(v)) for v in predicted)


def _safetensors(header: dict, payload: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


headers = st.dictionaries(
    st.sampled_from(["w", "b", "__metadata__", "mean", "coef"]),
    st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F64", "I64", "BOOL", "F16", "XX", 7]),
                           "shape": st.lists(st.integers(-3, 2**40), max_size=3),
                           "data_offsets": st.lists(st.integers(-5, 2**40), max_size=3)}) | values,
    max_size=3,
)


@FAST
@given(st.one_of(st.binary(max_size=200), st.builds(_safetensors, headers, st.binary(max_size=64))),
       st.sampled_from(["np", "pt"]))
@example(b"\x80\x04\x95" + b"\x00" * 40, "pt")  # a pickle named .safetensors
def test_safetensors_headers(tmp_path, data, framework):
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    parses_or_refuses(load_tensors, path, framework)


# ------------------------------------------------------------------------------------------ fairseq index
@FAST
@given(st.integers(0, 3), st.integers(-2, 12), st.integers(0, 2**64 - 1), st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
       st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6), st.binary(max_size=64), st.booleans())
def test_index_headers(tmp_path, version, code, count, sizes, pointers, data, legacy):
    if legacy:
        raw = b"TNTIDX\x00\x00" + struct.pack("<QQQQQ", version, code % 256, 2, count % 8, len(sizes))
        raw += b"".join(struct.pack("<q", v) for v in pointers) + b"".join(struct.pack("<q", max(min(v, 2**63 - 1), -(2**63))) for v in sizes)
    else:
        raw = MMAP_MAGIC + struct.pack("<Q", version) + bytes([code % 256]) + struct.pack("<Q", count)
        raw += b"".join(struct.pack("<i", v) for v in sizes) + b"".join(struct.pack("<q", v) for v in pointers)
    (tmp_path / "d.idx").write_bytes(raw)
    (tmp_path / "d.bin").write_bytes(data)
    dataset = parses_or_refuses(IndexedDataset, tmp_path / "d")
    if dataset is not None:  # every sentence the index promises can be read
        for i in range(min(len(dataset), 8)):
            assert len(dataset[i]) == dataset.sizes[i]


# ------------------------------------------------------------------------------------------ dictionaries
@FAST
@given(st.one_of(st.binary(max_size=300), st.lists(st.tuples(st.text(max_size=6), st.sampled_from(["1", "-3", "x", "", "1e3", "#fairseq:overwrite"])),
                                                   max_size=8).map(lambda pairs: "\n".join(f"{a} {b}" for a, b in pairs).encode("utf-8", "surrogatepass"))))
def test_dictionaries(tmp_path, data):
    path = tmp_path / "dict.src.txt"
    path.write_bytes(data)
    dictionary = parses_or_refuses(Dictionary.load, path)
    if dictionary is not None:  # what loads encodes and hashes
        dictionary.encode_line("a b c")
        assert len(dictionary.sha256()) == 64


# ------------------------------------------------------------------------------------------ config.json
@pytest.fixture(scope="module")
def model_config() -> dict:
    from hat_cli.model.directory import describe
    from hat_cli.model.transformer import TransformerModel

    return describe(TransformerModel.subtransformer(SPACE.smallest(), SPACE.shape, 16, 16, True))


@FAST
@given(st.dictionaries(st.sampled_from(["kind", "super_shape", "arch", "src_vocab_size", "tgt_vocab_size", "share_all_embeddings",
                                        "hyperparameters", "format", "format_version"]), values, max_size=3),
       st.dictionaries(st.sampled_from(["encoder_embed_dim", "decoder_embed_dim", "encoder_layers", "qkv_dim", "decoder_ffn_embed_dim"]),
                       st.integers(-5, 2**40) | values, max_size=2))
def test_model_config_json(tmp_path, model_config, changes, shape_changes):
    meta = json.loads(json.dumps(model_config))
    meta.update(changes)
    if isinstance(meta.get("super_shape"), dict):
        meta["super_shape"].update(shape_changes)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = parses_or_refuses(read_metadata, tmp_path)
    if loaded is None:
        return
    try:
        check_model_config(loaded)
    except HatError:
        return
    shape = loaded["super_shape"]
    small = max(shape.values()) <= 512 and shape["encoder_layers"] + shape["decoder_layers"] <= 12
    if small and max(loaded["src_vocab_size"], loaded["tgt_vocab_size"]) <= 4096:
        parses_or_refuses(build_from_metadata, loaded)  # what the check passes is built, or refused in a sentence


@FAST
@given(st.binary(max_size=200))
def test_model_config_bytes(tmp_path, data):
    (tmp_path / "config.json").write_bytes(data)
    parses_or_refuses(read_metadata, tmp_path)
