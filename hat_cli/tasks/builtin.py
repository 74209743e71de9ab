"""The six built-in tasks: the four of the paper and two of ours (Multi30k, and the offline demo task).

Each record is every fact hat needs about its task (record.py says what each field means); the registry in
__init__.py registers them.
"""

from __future__ import annotations

from hat_cli.tasks.record import Task

# ------------------------------------------------------------------------------------------------ training
# docs/METHOD.md §3.2, configs/<task>/supertransformer/*.yml. WMT published: 8 GPUs x update-freq 16 x 4096 tokens
# = 524k tokens per update. Our default reaches the same tokens per update on ONE GPU with big micro-batches
# (32768 x 16); with N GPUs pass --update-freq 16/N to keep it.
_WMT_SUPER = dict(
    max_updates=40000, warmup_updates=10000, lr_scheduler="cosine", lr=1e-3, min_lr=1e-7, warmup_init_lr=1e-7,
    weight_decay=0.0, clip_norm=0.0, dropout=0.3, attention_dropout=0.1, max_tokens=32768, update_freq=16,
    keep_last=5,  # published keep-last-epochs 20 counted epochs; 5 checkpoints of ~1.1 GB (weights + Adam) each here
)
# IWSLT: inverse_sqrt 5e-4, wd 1e-4, clip-norm left at fairseq's default 25, 1 GPU, fp32 published.
_IWSLT_SUPER = dict(
    max_updates=50000, warmup_updates=10000, lr_scheduler="inverse_sqrt", lr=5e-4, warmup_init_lr=1e-7,
    weight_decay=1e-4, clip_norm=25.0, dropout=0.375, attention_dropout=0.0, max_tokens=4096, update_freq=1,
    keep_last=10,  # enough for the published average of the last 10 checkpoints (--average-last 10)
)
# Our small tasks (not published): chosen so Multi30k trains in a few GPU minutes and demo on a laptop CPU.
# Multi30k, measured on one H200 (bench/RESULTS.md, "The sanity bar"): lr 5e-4 / warmup 500 reached valid loss
# 5.27 bits after 1000 updates against 5.55 at 1e-3. Dropout 0.1, not the 0.3 of IWSLT: on 29k sentences the
# 512-wide plain Transformer scored 40.6 BLEU at 0.1 and 25-35 at 0.2-0.3 (more dropout was worse still, at
# 4096 and 8192 tokens); its validation loss bottoms out near update 1500-2500, so 3000 updates, a checkpoint
# every 500, and (for train-sub) the average of the last 4 as the final model.
_MULTI30K_SUPER = dict(
    max_updates=3000, warmup_updates=500, lr_scheduler="inverse_sqrt", lr=5e-4, warmup_init_lr=1e-7,
    weight_decay=1e-4, clip_norm=25.0, dropout=0.1, attention_dropout=0.1, max_tokens=8192, update_freq=1,
    save_interval_updates=500, validate_every=500, keep_last=10,
)
_DEMO_SUPER = dict(  # 64-wide models learn the demo task at 5e-3 as fast as 128-wide ones at 2e-3, 6x cheaper
    max_updates=300, warmup_updates=50, lr_scheduler="inverse_sqrt", lr=5e-3, warmup_init_lr=1e-7,
    weight_decay=0.0, clip_norm=25.0, dropout=0.1, attention_dropout=0.0, max_tokens=2048, update_freq=1,
    save_interval_updates=100, validate_every=100, log_every=10, keep_last=3,
)

# configs/<task>/subtransformer/common.yml: the task's super settings with warmup 4000 (all four tasks).
_WMT_SUB = {**_WMT_SUPER, "warmup_updates": 4000}
_IWSLT_SUB = {**_IWSLT_SUPER, "warmup_updates": 4000}

# ------------------------------------------------------------------------------------------------ tasks
# Timed vocabularies: WMT'14 En-De's joined dictionary has 32768 symbols (docs/METHOD.md §9.4); the En-Fr and WMT'19
# dictionaries are not available here, so they use the same 32768 (an assumption; a CSV names its task).
# IWSLT: 8848 de / 6632 en.
BUILTIN_TASKS: tuple[Task, ...] = (
    Task("iwslt14.de-en", "de", "en", "space1", "latency", 23, False, 5, 1.0, "iwslt14deen", "IWSLT'14 German-English (TED talks)",
         timed_vocab=(8848, 6632), train_super=_IWSLT_SUPER, train_sub=_IWSLT_SUB, recipe="iwslt14.de-en",
         original_data_dirs=("iwslt14_de_en",)),
    Task("wmt14.en-de", "en", "de", "space0", "latency", 30, True, 4, 0.6, "wmt14ende", "WMT'14 English-German",
         timed_vocab=(32768, 32768), train_super=_WMT_SUPER, train_sub=_WMT_SUB, recipe="wmt14.en-de",
         original_data_dirs=("wmt16_en_de", "wmt14_en_de")),
    Task("wmt14.en-fr", "en", "fr", "space0", "latency", 30, True, 4, 0.6, "wmt14enfr", "WMT'14 English-French",
         timed_vocab=(32768, 32768), train_super=_WMT_SUPER, train_sub=_WMT_SUB, recipe="wmt14.en-fr",
         original_data_dirs=("wmt14_en_fr",)),
    Task("wmt19.en-de", "en", "de", "space0", "latency", 30, True, 4, 0.6, "wmt19ende", "WMT'19 English-German",
         timed_vocab=(32768, 32768), train_super=_WMT_SUPER, train_sub=_WMT_SUB, recipe="wmt19.en-de",
         original_data_dirs=("wmt19_en_de",)),
    Task("multi30k.de-en", "de", "en", "multi30k", "multi30k", 23, True, 5, 1.0, None,
         "Multi30k task 1 German-English (image captions)",
         timed_vocab=(10000, 10000), train_super=_MULTI30K_SUPER, train_sub={**_MULTI30K_SUPER, "average_last": 4},
         recipe="multi30k.de-en"),
    Task("demo", "src", "tgt", "demo", "demo", 12, True, 4, 1.0, None, "generated offline toy task for `hat demo`",
         timed_vocab=(128, 128), train_super=_DEMO_SUPER, train_sub=_DEMO_SUPER, recipe="demo"),
)
