"""`hat zoo pull` / `push` through the real `huggingface_hub` client against servers on 127.0.0.1.

`huggingface_hub` reads HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE when imported, so every pull runs the
real CLI in a subprocess with its own environment (HUB-TESTING.md). The Hub stand-in is
tests/hub_server.py; a second server plays the authors' original download links.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import HubServer, StaticServer  # noqa: E402
from test_convert_fixtures import write_original_checkpoint  # noqa: E402

from hat_cli.model.transformer import TransformerModel, extract_subtransformer  # noqa: E402
from hat_cli.model.directory import load_model, save_model  # noqa: E402
from hat_cli.model.space import SubTransformerConfig, SuperShape  # noqa: E402

SHAPE = SuperShape(64, 64, 96, 96, 6, 6, 8, 8, 64)
ARCH = SubTransformerConfig(48, 48, 6, 2, (64, 32, 64, 96, 64, 32), (8, 4, 8, 4, 8, 8), (96, 64), (8, 4), (4, 8), (-1, 2))
VOCAB = 40
TINY = "HAT_test_tiny@1.0ms_bleu@30.0"
BADSUM = "HAT_test_badsum@1.0ms_bleu@30.0"
FALLBACK = "HAT_test_fallback@2.0ms_bleu@31.0"
REPOS = {TINY: "hat-cli/HAT_test_tiny-1.0ms_bleu-30.0", BADSUM: "hat-cli/HAT_test_badsum-1.0ms_bleu-30.0", FALLBACK: "hat-cli/HAT_test_fallback-2.0ms_bleu-31.0"}
ORIGINAL_PATH = "/s/x1y2z3/HAT_test_fallback@2.0ms_bleu@31.0.pt"
PREDICTOR_PATH = "/mit-han-lab/hardware-aware-transformers/abc/latency_dataset/predictors/wmt14ende_cpu_xeon.pt"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A small SuperTransformer, its compact copy as the Hub would serve it, and its original checkpoint."""
    root = tmp_path_factory.mktemp("zoo-hub")
    torch.manual_seed(3)
    super_model = TransformerModel.supertransformer(SHAPE, VOCAB, VOCAB, True).eval()
    with torch.no_grad():
        for p in super_model.parameters():
            p.copy_(p.half().float())  # what an fp16 original stores
    compact = extract_subtransformer(super_model, ARCH)
    save_model(compact, root / "hubcopy", {"task": "wmt14.en-de", "dictionaries": {}, "zoo_name": TINY})
    files = {name: (root / "hubcopy" / name).read_bytes() for name in ("model.safetensors", "config.json")}
    original = write_original_checkpoint(root / "original.pt", super_model, legacy=True, fp16=True)
    predictor = collections.OrderedDict(
        [("first_layer.weight", torch.randn(400, 10)), ("first_layer.bias", torch.randn(400))]
        + [(f"layers.{i}.{p}", torch.randn(400, 400) if p == "weight" else torch.randn(400)) for i in range(3) for p in ("weight", "bias")]
        + [("predict.weight", torch.randn(1, 400)), ("predict.bias", torch.randn(1))]
    )
    torch.save(predictor, root / "predictor.pt", _use_new_zipfile_serialization=False)  # as HAT shipped them
    return {"root": root, "super": super_model, "files": files, "original": original.read_bytes(),
            "predictor": predictor, "predictor_bytes": (root / "predictor.pt").read_bytes(),
            "sha256": hashlib.sha256(files["model.safetensors"]).hexdigest()}


def _toml_entry(name: str, repo: str, revision: str, sha256: str, original_url: str) -> str:
    shape = "\n".join(f"{k} = {v}" for k, v in SHAPE.to_dict().items())
    arch = "\n".join(f"{k} = {json.dumps(v)}" for k, v in ARCH.to_hat_keys().items())
    return f"""
[models."{name}"]
kind = "subtransformer"
task = "wmt14.en-de"
hardware = "xeon"
latency_ms = 1.0
bleu = 30.0
sacrebleu = 29.5
params = 1
share_all_embeddings = true
original_url = "{original_url}"

[models."{name}".arch]
{arch}

[models."{name}".super_shape]
{shape}

[models."{name}".hub]
repo = "{repo}"
filename = "model.safetensors"
revision = "{revision}"
sha256 = "{sha256}"
"""


@pytest.fixture
def servers(artifacts, tmp_path):
    hub = HubServer().start()
    static = StaticServer({ORIGINAL_PATH: artifacts["original"], PREDICTOR_PATH: artifacts["predictor_bytes"]}).start()
    commit = hub.add_repo(REPOS[TINY], artifacts["files"])
    hub.add_repo(REPOS[BADSUM], artifacts["files"])
    original_url = static.url + ORIGINAL_PATH
    table = tmp_path / "zoo.toml"
    table.write_text(
        _toml_entry(TINY, REPOS[TINY], commit, artifacts["sha256"], original_url)
        + _toml_entry(BADSUM, REPOS[BADSUM], commit, "0" * 64, original_url)
        + _toml_entry(FALLBACK, REPOS[FALLBACK], "main", "", original_url)  # not on the Hub
        + f"""
[predictors."wmt14ende_cpu_xeon"]
task = "wmt14.en-de"
hardware = "xeon"
feature_norm = [640, 6, 2048, 6, 640, 6, 2048, 6, 6, 2]
lat_norm = 300
original_url = "{static.url + PREDICTOR_PATH}"

[predictors."wmt14ende_cpu_xeon".hub]
repo = "hat-cli/HAT_latency_predictors"
filename = "wmt14ende_cpu_xeon.safetensors"
revision = "main"
sha256 = ""
"""
    )
    yield {"hub": hub, "static": static, "table": table, "commit": commit, "tmp": tmp_path}
    hub.stop()
    static.stop()


def hat(servers, *args, home: str = "home", offline: bool = False, extra_env: dict | None = None):
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=servers["hub"].url if servers["hub"]._httpd else "http://127.0.0.1:9",
        HF_HOME=str(servers["tmp"] / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HAT_HOME=str(servers["tmp"] / home),
        HAT_ZOO_FILE=str(servers["table"]),
        OMP_NUM_THREADS="1",
    )
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "hat_cli.cli.app", *args], env=env, capture_output=True, text=True, timeout=300)


def hub_requests(servers) -> list[tuple[str, str]]:
    return [r for r in servers["hub"].requests if "/resolve/" in r[1] or "/api/" in r[1]]


def test_pull_by_prefix_then_cache_hits_without_network(servers, artifacts):
    run = hat(servers, "zoo", "pull", "HAT_test_tiny", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["name"] == TINY and doc["sha256"] == artifacts["sha256"]
    path = Path(doc["path"])
    assert path == servers["tmp"] / "home" / "models" / TINY
    resolved = {p for m, p in hub_requests(servers) if m == "GET"}
    assert f"/{REPOS[TINY]}/resolve/{servers['commit']}/model.safetensors" in resolved
    model, meta = load_model(path)
    src = torch.tensor([[5, 6, 7, 8, 2]])
    prev = torch.tensor([[2, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(model(src, prev), artifacts["super"](src, prev, ARCH), rtol=1e-5, atol=1e-5)
    record = json.loads((path / "zoo.json").read_text())
    assert record["source"] == "hub" and record["commit"] == servers["commit"]

    servers["hub"].stop()  # no network from here on
    again = hat(servers, "zoo", "pull", TINY, "--json")  # the local copy
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["path"] == str(path)
    fresh = hat(servers, "zoo", "pull", TINY, "--json", home="home2")  # only the Hub cache has it
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["sha256"] == artifacts["sha256"]
    assert (servers["tmp"] / "home2" / "models" / TINY / "model.safetensors").read_bytes() == artifacts["files"]["model.safetensors"]


def test_offline_mode_uses_only_the_cache(servers, artifacts):
    cold = hat(servers, "zoo", "pull", TINY, offline=True)
    assert cold.returncode == 2
    assert "HF_HUB_OFFLINE" in cold.stderr and "Traceback" not in cold.stderr
    assert hub_requests(servers) == [] and servers["static"].requests == []  # no fallback download either
    warm = hat(servers, "zoo", "pull", TINY)
    assert warm.returncode == 0, warm.stderr
    before = len(hub_requests(servers))
    offline = hat(servers, "zoo", "pull", TINY, "--json", offline=True, home="home-offline")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["sha256"] == artifacts["sha256"]
    assert len(hub_requests(servers)) == before


def test_checksum_mismatch_fails_cleanly_and_leaves_no_file(servers):
    run = hat(servers, "zoo", "pull", BADSUM)
    assert run.returncode == 2
    assert "sha256" in run.stderr and "deleted" in run.stderr and "Traceback" not in run.stderr
    cache = servers["tmp"] / "hf" / "hub" / f"models--{REPOS[BADSUM].replace('/', '--')}"
    leftovers = [p for p in cache.rglob("*") if p.is_file() or p.is_symlink()] if cache.exists() else []
    assert leftovers == []  # neither the blob nor its snapshot link survive
    models_dir = servers["tmp"] / "home" / "models"
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_missing_repository_falls_back_to_original_url_and_converts(servers, artifacts):
    run = hat(servers, "zoo", "pull", "HAT_test_fallback", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["name"] == FALLBACK and doc["source"] == "original"
    assert ("HEAD", f"/{REPOS[FALLBACK]}/resolve/main/model.safetensors") in servers["hub"].requests
    assert servers["static"].requests == [("GET", ORIGINAL_PATH)]
    path = Path(doc["path"])
    assert hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest() == doc["sha256"]
    model, meta = load_model(path)
    assert meta["kind"] == "subtransformer" and meta["zoo_name"] == FALLBACK and meta["task"] == "wmt14.en-de"
    src = torch.tensor([[1, 1, 5, 6, 7, 2], [4, 5, 6, 7, 8, 2]])
    prev = torch.tensor([[2, 9, 10, 11], [2, 12, 13, 14]])
    with torch.no_grad():
        torch.testing.assert_close(model(src, prev), artifacts["super"](src, prev, ARCH), rtol=1e-5, atol=1e-5)
    downloads = servers["tmp"] / "home" / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []  # the pickle is not kept
    record = json.loads((path / "zoo.json").read_text())
    assert record["original_sha256"] == hashlib.sha256(artifacts["original"]).hexdigest()


def test_push_publishes_model_card_and_pulls_back(servers, artifacts):
    directory = artifacts["root"] / "hubcopy"
    run = hat(servers, "zoo", "push", str(directory), "--repo", "hat-cli/pushed-tiny", "--json", extra_env={"HF_TOKEN": "hf_test"})
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["repo"] == "hat-cli/pushed-tiny" and doc["sha256"] == artifacts["sha256"]
    repo = servers["hub"].repos["hat-cli/pushed-tiny"]
    assert doc["commit"] == repo.commit
    assert repo.files["model.safetensors"] == artifacts["files"]["model.safetensors"]
    card = repo.files["README.md"].decode()
    for expected in ("hardware | xeon", "latency | 1.0 ms", "BLEU | 30.0", "task | wmt14.en-de", "decoder-arbitrary-ende-attn-all-subtransformer: [-1, 2]"):
        assert expected in card
    assert ("POST", "/api/repos/create") in servers["hub"].requests
    # the published copy is pullable under the pinned revision and sha256 that push reported
    table = servers["table"]
    table.write_text(table.read_text() + _toml_entry("HAT_pushed@1.0ms_bleu@30.0", "hat-cli/pushed-tiny", doc["commit"], doc["sha256"], ""))
    pulled = hat(servers, "zoo", "pull", "HAT_pushed", "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["sha256"] == doc["sha256"]


def test_bad_repo_id_is_refused(servers, artifacts):
    run = hat(servers, "zoo", "push", str(artifacts["root"] / "hubcopy"), "--repo", "hat-cli/HAT_x@1ms")
    assert run.returncode == 2 and "not a Hub repository id" in run.stderr


def test_published_predictor_pulls_from_original_and_reads_safely(servers, artifacts):
    from safetensors import safe_open

    run = hat(servers, "zoo", "pull", "wmt14ende_cpu_xeon", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["source"] == "original" and servers["static"].requests == [("GET", PREDICTOR_PATH)]
    with safe_open(doc["path"], "pt") as f:
        assert f.metadata()["lat_norm"] == "300"
        assert list(f.keys()) == sorted(artifacts["predictor"])
        for key in f.keys():
            assert torch.equal(f.get_tensor(key), artifacts["predictor"][key])
