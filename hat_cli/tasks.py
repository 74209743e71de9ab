"""The translation tasks hat knows: languages, search spaces and the published evaluation settings.

Static facts only (no torch, no I/O) so every command can resolve ``--task`` cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from hat_cli.errors import HatError


@dataclass(frozen=True)
class Task:
    name: str
    src: str
    tgt: str
    space: str  # built-in search space of the SuperTransformer (configs/<space>.yml)
    latency_space: str  # space latency datasets are sampled from
    dummy_length: int  # HAT's latency/FLOPs dummy sentence length: 30 for WMT, 23 for IWSLT (HAT-SPEC §4.1)
    share_all_embeddings: bool
    beam: int
    lenpen: float
    zoo_key: str | None = None  # the task's spelling in published model names (e.g. "wmt14ende")
    description: str = ""

    @property
    def pair(self) -> str:
        return f"{self.src}-{self.tgt}"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("iwslt14.de-en", "de", "en", "space1", "latency", 23, False, 5, 1.0, "iwslt14deen", "IWSLT'14 German-English (TED talks)"),
        Task("wmt14.en-de", "en", "de", "space0", "latency", 30, True, 4, 0.6, "wmt14ende", "WMT'14 English-German"),
        Task("wmt14.en-fr", "en", "fr", "space0", "latency", 30, True, 4, 0.6, "wmt14enfr", "WMT'14 English-French"),
        Task("wmt19.en-de", "en", "de", "space0", "latency", 30, True, 4, 0.6, "wmt19ende", "WMT'19 English-German"),
        Task("multi30k.de-en", "de", "en", "multi30k", "multi30k", 23, True, 5, 1.0, None, "Multi30k task 1 German-English (image captions)"),
        Task("demo", "src", "tgt", "demo", "demo", 12, True, 4, 1.0, None, "generated offline toy task for `hat demo`"),
    )
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise HatError(f"Unknown task '{name}'; choose one of: {', '.join(TASKS)}.") from None


def task_for_zoo_key(zoo_key: str) -> Task:
    for task in TASKS.values():
        if task.zoo_key == zoo_key:
            return task
    raise HatError(f"No task matches the published task key '{zoo_key}'.")
