"""Regenerate `model_zoo.toml` from the published facts in `hat-zoo.json` (HAT-SPEC §11).

Run by hand when the facts or the Hub locations change; `hat` itself only reads the TOML:

    python scripts/build_zoo_toml.py ../shared/design/hat-zoo.json > model_zoo.toml

The Hub fields are written unpublished (`sha256 = ""`, `revision = "main"`); after `hat zoo push`
the revision is pinned to the commit sha and the sha256 of the uploaded file is filled in.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from hat_cli.model.space import YAML_KEYS

HUB_NAMESPACE = "hat-cli"
HAT_REPOSITORY = "mit-han-lab/hardware-aware-transformers"
HAT_COMMIT = "70e5a279d080670208249fdd98ed731fa9bcc466"
TASK_NAMES = {  # published task key -> hat task name (hat_cli/tasks.py)
    "iwslt14deen": "iwslt14.de-en",
    "wmt14ende": "wmt14.en-de",
    "wmt14enfr": "wmt14.en-fr",
    "wmt19ende": "wmt19.en-de",
}
ARCH_KEYS = YAML_KEYS  # HAT's 10 SubTransformer keys, in the published order
SHAPE_KEYS = (
    "encoder_embed_dim",
    "decoder_embed_dim",
    "encoder_ffn_embed_dim",
    "decoder_ffn_embed_dim",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "qkv_dim",
)


def hub_repo_name(name: str) -> str:
    """Hub repository ids allow only letters, digits, '-', '_' and '.', so '@' becomes '-'."""
    repo = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
    if len(repo) > 96 or ".." in repo or "--" in repo:
        raise SystemExit(f"cannot make a Hub repository id from {name!r}")
    return f"{HUB_NAMESPACE}/{repo}"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string for these ASCII values
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def table(header: str, values: dict) -> str:
    lines = [f"[{header}]"] + [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def super_params_nonembed(shape: dict) -> int:
    """HAT's non-embedding count (HAT-SPEC §2.10) of the whole SuperTransformer."""
    q, e, d = shape["qkv_dim"], shape["encoder_embed_dim"], shape["decoder_embed_dim"]
    fe, fd = shape["encoder_ffn_embed_dim"], shape["decoder_ffn_embed_dim"]
    enc = 3 * q * e + 3 * q + q * e + e + 2 * e * fe + fe + e + 4 * e
    dec = (3 * q * d + 3 * q + q * d + d) + (q * d + 2 * q * e + 3 * q + q * d + d) + (2 * d * fd + fd + d) + 6 * d
    return enc * shape["encoder_layers"] + dec * shape["decoder_layers"]


def model_tables(m: dict) -> str:
    key = f'models."{m["name"]}"'
    common = {
        "kind": m["kind"],
        "task": TASK_NAMES[m["task"]],
        "task_label": m["task_label"],
    }
    if m["kind"] == "subtransformer":
        predictor = Path(m["latency_predictor"]["ckpt"]).stem
        common |= {
            "hardware": m["hardware"],
            "hardware_label": m["hardware_label"],
            "latency_ms": m["latency_ms"],
            "latency_label": m["latency_label"],
            "bleu": m["bleu"],
            "sacrebleu": m["sacrebleu"],
            "params": m["params_nonembed"],
            "flops": m["flops_wo_last"],
            "predictor": predictor,
            "same_architecture_as": m.get("same_architecture_as"),
        }
    else:
        common |= {"search_space": m["search_space"], "params": super_params_nonembed(m["supertransformer_shape"])}
    common |= {
        "share_all_embeddings": m["share_all_embeddings"],
        "hat_arch": m["arch"],
        "hat_config": m["config_path"],
        "original_url": m["download_url"],
    }
    out = [table(key, common)]
    if m["kind"] == "subtransformer":
        out.append(table(f"{key}.arch", {k: m["yaml"][k] for k in ARCH_KEYS}))
    out.append(table(f"{key}.super_shape", {k: m["supertransformer_shape"][k] for k in SHAPE_KEYS}))
    out.append(
        table(
            f"{key}.hub",
            {"repo": hub_repo_name(m["name"]), "filename": "model.safetensors", "revision": "main", "sha256": ""},
        )
    )
    return "\n".join(out)


def predictor_tables(models: list[dict]) -> str:
    seen: dict[str, dict] = {}
    for m in models:
        p = m.get("latency_predictor")
        if p:
            seen.setdefault(Path(p["ckpt"]).stem, {"m": m, "p": p})
    out = []
    for name in sorted(seen):
        m, p = seen[name]["m"], seen[name]["p"]
        key = f'predictors."{name}"'
        out.append(
            table(
                key,
                {
                    "task": TASK_NAMES[m["task"]],
                    "hardware": m["hardware"],
                    "feature_norm": p["feature_norm"],
                    "lat_norm": p["lat_norm"],
                    "original_url": f"https://raw.githubusercontent.com/{HAT_REPOSITORY}/{HAT_COMMIT}/{p['ckpt']}",
                },
            )
        )
        out.append(
            table(
                f"{key}.hub",
                {
                    "repo": f"{HUB_NAMESPACE}/HAT_latency_predictors",
                    "filename": f"{name}.safetensors",
                    "revision": "main",
                    "sha256": "",
                },
            )
        )
    return "\n".join(out)


HEADER = """\
# The published HAT models (Wang et al., ACL 2020) and their latency predictors.
# Generated by scripts/build_zoo_toml.py from the facts in hat-zoo.json (HAT-SPEC §11); names are
# exactly the published ones. Numbers: latency_ms as measured by the authors on that hardware (the
# name's latency), BLEU / SacreBLEU as published, params = non-embedding parameters and flops = FLOPs
# without the last layer, both in HAT's accounting.
#
# original_url: the authors' checkpoint (a fairseq pickle holding SuperTransformer-shaped weights;
# `hat zoo convert` reads it with a restricted unpickler).
# hub: where hat's compact safetensors copy lives on the Hugging Face Hub. NOT PUBLISHED YET: while
# sha256 is empty, `hat zoo pull` still asks the Hub (or an HF_ENDPOINT mirror) and, when it has no
# copy, downloads original_url and converts on the fly. On publication `revision` is pinned to the
# commit sha and `sha256` to the digest of the uploaded file, which pull then verifies.

schema = 1
hat_repository = "{repo}"
hat_commit = "{commit}"
"""


def main(argv: list[str]) -> None:
    source = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "design" / "hat-zoo.json"
    models = json.loads(source.read_text(encoding="utf-8"))
    subs = sorted((m for m in models if m["kind"] == "subtransformer"), key=lambda m: (m["task"], m["hardware"], m["latency_ms"]))
    supers = sorted((m for m in models if m["kind"] == "supertransformer"), key=lambda m: m["name"])
    parts = [HEADER.replace("{repo}", HAT_REPOSITORY).replace("{commit}", HAT_COMMIT)]
    parts.append("# ---------------------------------------------------------------- SubTransformers (44)\n")
    parts += [model_tables(m) for m in subs]
    parts.append("# --------------------------------------------------------------- SuperTransformers (4)\n")
    parts += [model_tables(m) for m in supers]
    parts.append("# ------------------------------------------------------------ latency predictors (8)\n")
    parts.append(predictor_tables(models))
    sys.stdout.write("\n".join(parts))


if __name__ == "__main__":
    main(sys.argv)
