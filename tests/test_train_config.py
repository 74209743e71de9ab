"""Per-task published defaults (docs/METHOD.md §3.2) and how YAML / CLI overrides resolve."""

import pytest

from hat_cli.core.errors import HatError
from hat_cli.training.config import TrainingConfig, resolve_training_config


def test_published_wmt_and_iwslt_defaults():
    wmt = resolve_training_config("wmt14.en-de", "super")
    assert (wmt.max_updates, wmt.warmup_updates, wmt.lr_scheduler, wmt.lr, wmt.min_lr) == (40000, 10000, "cosine", 1e-3, 1e-7)
    assert (wmt.clip_norm, wmt.weight_decay, wmt.dropout, wmt.attention_dropout) == (0.0, 0.0, 0.3, 0.1)
    assert wmt.adam_betas == (0.9, 0.98) and wmt.label_smoothing == 0.1
    iwslt = resolve_training_config("iwslt14.de-en", "super")
    assert (iwslt.lr_scheduler, iwslt.lr, iwslt.max_updates, iwslt.clip_norm, iwslt.weight_decay) == ("inverse_sqrt", 5e-4, 50000, 25.0, 1e-4)
    assert iwslt.dropout == 0.375 and iwslt.attention_dropout == 0.0
    # common.yml: SubTransformer training differs by warmup 4000
    for task in ("wmt14.en-de", "wmt14.en-fr", "wmt19.en-de", "iwslt14.de-en"):
        sub = resolve_training_config(task, "sub")
        assert sub.warmup_updates == 4000
        assert sub.replace(warmup_updates=10000) == resolve_training_config(task, "super")


def test_yaml_then_cli_overrides(tmp_path):
    yml = tmp_path / "over.yml"
    yml.write_text("max-update: 123\nwarmup-updates: 7\nmax-lr: 0.002\nadam-betas: '(0.9, 0.997)'\ndropout: 0.2\n")
    cfg = resolve_training_config("wmt14.en-de", "super", yml, {"dropout": 0.25, "lr": None})
    assert cfg.max_updates == 123 and cfg.warmup_updates == 7 and cfg.lr == 0.002
    assert cfg.adam_betas == (0.9, 0.997)
    assert cfg.dropout == 0.25  # CLI wins over the file; None means "not given"
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_overrides_are_clear_errors(tmp_path):
    with pytest.raises(HatError, match="unknown training option 'learning_rat'"):
        resolve_training_config("demo", "super", cli_overrides={"learning_rat": 1})
    with pytest.raises(HatError, match="Unknown task|No training defaults"):
        resolve_training_config("wmt99", "super")
    with pytest.raises(HatError, match="does not exist"):
        resolve_training_config("demo", "super", tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("max-update: many\n")
    with pytest.raises(HatError, match="max_updates"):
        resolve_training_config("demo", "super", bad)
    with pytest.raises(HatError, match="precision"):
        resolve_training_config("demo", "super", cli_overrides={"precision": "fp8"})
    with pytest.raises(HatError, match="larger than warmup"):
        resolve_training_config("wmt14.en-de", "super", cli_overrides={"max_updates": 100})


def test_wmt_default_batch_is_the_published_tokens_per_update_on_one_gpu():
    cfg = resolve_training_config("wmt14.en-de", "super")
    assert cfg.max_tokens * cfg.update_freq == 8 * 16 * 4096  # published: 8 GPUs x 16 x 4096
    iwslt = resolve_training_config("iwslt14.de-en", "super")
    assert (iwslt.max_tokens, iwslt.update_freq) == (4096, 1)


def test_multi30k_sub_averages_by_default_and_best_replaces_the_average():
    cfg = resolve_training_config("multi30k.de-en", "sub")
    assert cfg.average_last == 4 and cfg.dropout == 0.1 and cfg.max_updates == 3000
    assert resolve_training_config("multi30k.de-en", "super").average_last == 0
    best = resolve_training_config("multi30k.de-en", "sub", cli_overrides={"final_model": "best"})
    assert best.final_model == "best" and best.average_last == 0
    last = resolve_training_config("multi30k.de-en", "sub", cli_overrides={"final_model": "last"})
    assert last.final_model == "last" and last.average_last == 0
    with pytest.raises(HatError, match="not both"):
        resolve_training_config("multi30k.de-en", "sub", cli_overrides={"final_model": "best", "average_last": 3})


@pytest.mark.parametrize("text, expected", [("false", False), ("true", True), ("auto", None), ("no", False), ("", None)])
def test_compiled_switches_from_a_file_are_switches_not_strings(tmp_path, text, expected):
    """`compiled_loss: false` once came through as the string 'False', which is true: the switch stayed on."""
    yml = tmp_path / "switch.yml"
    yml.write_text(f"compiled_loss: {text}\ncompiled_norms: {text}\n")
    cfg = resolve_training_config("multi30k.de-en", "super", yml)
    assert cfg.compiled_loss is expected and cfg.compiled_norms is expected
    assert TrainingConfig.from_dict(cfg.to_dict()) == cfg
    bad = tmp_path / "bad.yml"
    bad.write_text("compiled_loss: sometimes\n")
    with pytest.raises(HatError, match="compiled_loss"):
        resolve_training_config("multi30k.de-en", "super", bad)
