"""Layer 1: the translation tasks hat knows, one record per task, and their registry.

A :class:`Task` holds every fact about a task that the rest of hat needs: languages, search space and
latency space, the dummy sentence length and vocabulary sizes the latency protocol times, embedding
sharing, the published beam and length penalty, the training defaults, the data recipe and the task's
spelling in published model names (``record.py`` says what each field means). Adding a task = one record in
``builtin.py`` plus its search space YAML in ``configs/``; code outside hat calls :func:`register_task`.

Static facts only (no torch, no I/O) so every command can resolve ``--task`` cheaply.
"""

from __future__ import annotations

from hat_cli.core.errors import HatError
from hat_cli.core.registry import Registry
from hat_cli.tasks.builtin import BUILTIN_TASKS
from hat_cli.tasks.record import Task

TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry (a name may be registered once)."""
    return TASKS.add(task.name, task)


def all_tasks() -> list[Task]:
    return list(TASKS.values())


def get_task(name: str) -> Task:
    return TASKS.lookup(name)


def task_for_zoo_key(zoo_key: str) -> Task:
    for task in TASKS.values():
        if task.zoo_key == zoo_key:
            return task
    raise HatError(f"No task matches the published task key '{zoo_key}'.")


def find_task(word: str) -> Task:
    """A task by our name or by its spelling in published model names ('wmt14.en-de' or 'wmt14ende')."""
    if word in TASKS:
        return TASKS[word]
    try:
        return task_for_zoo_key(word)
    except HatError:
        return get_task(word)  # raises the standard "unknown task" sentence


for _task in BUILTIN_TASKS:
    register_task(_task)
