"""Resumable training checkpoints: one directory per saved update, written atomically.

Layout of ``<save_dir>/checkpoint_<updates>/``:

- ``weights.safetensors``   model parameters (tied tables stored once)
- ``optimizer.safetensors`` optimizer tensors (``state.<param name>.<key>``) + RNG states (``rng.*``)
- ``state.json``            everything else: update count, data position, optimizer hyper-parameters,
                            loss-scaler state, Python RNG state, the fully resolved config, metrics

The directory is assembled under a temporary name and renamed into place, and ``last.json`` (written
atomically after the rename) names the newest one, so a crash at any moment leaves the previous
checkpoint intact. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, naming
from hat_cli.core.tensors import load_tensors, save_tensors

CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)$")
LAST_POINTER = "last.json"
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


class ForeignCheckpoint(HatError):
    """A checkpoint that loads but belongs to another run (task, kind, architecture): not damage."""


def checkpoint_dir_name(updates: int) -> str:
    return f"checkpoint_{updates:07d}"


# ------------------------------------------------------------------------------------------------ weights
def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict with tied tensors stored once: returns (tensors, {dropped alias: kept name})."""
    kept: dict[tuple[int, int, tuple, tuple], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in kept:
            aliases[name] = kept[key]
            continue
        kept[key] = name
        tensors[name] = tensor.detach().contiguous().cpu()
    return tensors, aliases


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return _unique_state(model)[0]


def load_model_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str = "the checkpoint") -> None:
    """Copy ``tensors`` into ``model``; names missing from the file must be aliases of tied tensors."""
    _, aliases = _unique_state(model)
    expected = set(model.state_dict()) - set(aliases)
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise HatError(f"{source} does not fit this model ({detail}); was it written for another architecture?")
    state = model.state_dict()
    with torch.no_grad():
        for name, tensor in tensors.items():
            if state[name].shape != tensor.shape:
                raise HatError(f"{source}: '{name}' has shape {list(tensor.shape)}, the model expects {list(state[name].shape)}.")
            state[name].copy_(tensor)


# ------------------------------------------------------------------------------------------------ optimizer
def _optimizer_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (keyed by parameter name) and JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in sd["state"].items():
        pname = names[index]
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{pname}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(pname, {})[key] = value
    groups = []
    for group in sd["param_groups"]:
        g = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
        g["params"] = [names[i] for i in group["params"]]
        groups.append(g)
    return tensors, {"param_groups": groups, "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, names: dict[int, str], tensors: dict[str, torch.Tensor],
                       meta: dict[str, Any], source: str) -> None:
    index_of = {name: index for index, name in names.items()}
    current = optimizer.state_dict()
    groups = []
    for saved, live in zip(meta["param_groups"], current["param_groups"]):
        try:
            params = [index_of[n] for n in saved["params"]]
        except KeyError as exc:
            raise HatError(f"{source}: the optimizer state names parameter {exc} that this model lacks.") from None
        if params != live["params"]:
            raise HatError(f"{source}: the optimizer state's parameters do not match this model's.")
        group = {k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k != "params"}
        group["params"] = params
        groups.append(group)
    if len(groups) != len(current["param_groups"]):
        raise HatError(f"{source}: the optimizer state has {len(groups)} parameter groups, this run has {len(current['param_groups'])}.")
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        if not key.startswith("state."):
            continue
        pname, _, field = key[len("state."):].rpartition(".")
        state.setdefault(index_of[pname], {})[field] = tensor
    for pname, values in meta.get("scalars", {}).items():
        state.setdefault(index_of[pname], {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------ RNG
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------------------------------ save / load
def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as handle:  # created 0666 less the umask, like every file we write
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(save_dir: str | Path, updates: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    state: dict[str, Any], keep_last: int | None = None) -> Path:
    """Write ``checkpoint_<updates>`` atomically, point ``last.json`` at it, prune to ``keep_last``.

    ``state`` is any JSON-able dict (position, config, scaler, metrics); RNG states are added here.
    """
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    final = save_dir / checkpoint_dir_name(updates)
    tmp = save_dir / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        names = {i: n for i, n in enumerate(_param_names(model, optimizer))} if optimizer is not None else {}
        save_tensors(model_tensors(model), tmp / WEIGHTS_FILE, {"format": "pt"})
        opt_tensors, opt_meta = _optimizer_tensors(optimizer, names) if optimizer is not None else ({}, {})
        rng_tensors, rng_meta = capture_rng()
        save_tensors({**opt_tensors, **rng_tensors}, tmp / OPTIMIZER_FILE, {"format": "pt"})
        for f in (WEIGHTS_FILE, OPTIMIZER_FILE):
            _fsync_file(tmp / f)
        document = {**state, "updates": updates, "optimizer": opt_meta, "rng": rng_meta}
        _write_json(tmp / STATE_FILE, document)  # written last: its presence marks a complete checkpoint
        if final.exists():  # re-saving the same update (e.g. after a resume): swap it out
            trash = save_dir / f".{final.name}.old-{os.getpid()}"
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as exc:  # a full disk: name the checkpoint, not its temporary folder
        shutil.rmtree(tmp, ignore_errors=True)
        raise naming(exc, final) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(save_dir / LAST_POINTER, json.dumps({"checkpoint": final.name, "updates": updates}) + "\n")
    if keep_last is not None:
        prune_checkpoints(save_dir, keep_last, newest=updates)
    return final


def _param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """Names of the optimizer's parameters in its own order."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    names = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in by_id:
                raise HatError("The optimizer holds a tensor that is not a parameter of the model.")
            names.append(by_id[id(p)])
    return names


def checkpoint_updates(path: Path) -> int:
    return int(CHECKPOINT_RE.match(path.name).group(1))


def list_checkpoints(save_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``save_dir``, oldest first."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return []
    found = []
    for child in save_dir.iterdir():
        match = CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def best_checkpoint(save_dir: str | Path) -> tuple[Path, dict[str, float]] | None:
    """The kept checkpoint with the lowest validation loss (the mean over the validated architectures, as
    recorded when it was saved), the newest on ties; None when no checkpoint recorded one."""
    best = None
    for path in list_checkpoints(save_dir):
        losses = (read_state(path).get("metrics") or {}).get("valid_loss") or {}
        if not losses:
            continue
        score = sum(losses.values()) / len(losses)
        if best is None or score <= best[0]:
            best = (score, path, dict(losses))
    return None if best is None else (best[1], best[2])


def latest_checkpoint(save_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (``state.json`` is written last, so its presence means complete).

    ``last.json`` may lag one checkpoint behind after a crash between the rename and its update;
    the directory listing is the truth.
    """
    found = list_checkpoints(save_dir)
    return found[-1] if found else None


def prune_checkpoints(save_dir: str | Path, keep_last: int, newest: int | None = None) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints. (Leftovers of interrupted writes are
    :func:`sweep_partial`'s: it runs once when training starts, under the save dir's lock.)

    With ``newest`` (the update just saved), checkpoints of later updates are left alone and do not count:
    they are not this run's, and deleting them, or the new one in their favour, would lose work."""
    found = [p for p in list_checkpoints(save_dir) if newest is None or checkpoint_updates(p) <= newest]
    removed = found[: max(0, len(found) - keep_last)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def read_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HatError(f"{path} is not a complete checkpoint (no {STATE_FILE}).") from None
    except ValueError:  # includes UnicodeDecodeError
        raise HatError(f"{path / STATE_FILE} is not valid JSON.") from None
    if not isinstance(state, dict):
        raise HatError(f"{path / STATE_FILE} is not a checkpoint state (a JSON object).")
    return state


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Only the model weights of a checkpoint directory (not its optimizer state, twice their size)."""
    path = Path(path)
    if not (path / WEIGHTS_FILE).is_file():
        raise HatError(f"{path} has no {WEIGHTS_FILE}.")
    load_model_tensors(model, load_tensors(path / WEIGHTS_FILE), str(path))


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng_state: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer + RNG state) from a checkpoint directory; return its state document.

    A damaged checkpoint is a HatError naming it (see :func:`load_newest_loadable`)."""
    path = Path(path)
    state = read_state(path)
    extra = load_tensors(path / OPTIMIZER_FILE) if (path / OPTIMIZER_FILE).is_file() else {}
    load_weights(path, model)
    try:
        if optimizer is not None:
            names = {i: n for i, n in enumerate(_param_names(model, optimizer))}
            _restore_optimizer(optimizer, names, extra, state.get("optimizer", {}), str(path))
        if restore_rng_state:
            restore_rng(extra, state.get("rng", {}))
        int(state["updates"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise HatError(f"{path} holds an unusable training state ({type(exc).__name__}: {exc}).") from None
    return state


def load_newest_loadable(save_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                         accept=lambda path, state: None, set_aside: bool = True) -> tuple[Path, dict[str, Any], list[str]] | None:
    """Resume from the newest checkpoint that loads whole: (its path, its state, a sentence per damaged newer
    one, each set aside as ``damaged-<name>`` so it is neither loaded nor pruned again). None when there is no
    checkpoint; a HatError when none loads. ``accept(path, state)`` may raise a HatError for a state the caller
    cannot use (damage, like a file that does not load) or a ForeignCheckpoint for one of another run (not
    damage: it stops the search)."""
    save_dir = Path(save_dir)
    found = list_checkpoints(save_dir)
    notes: list[str] = []
    for path in reversed(found):
        try:
            accept(path, read_state(path))
            state = load_checkpoint(path, model, optimizer)
        except ForeignCheckpoint:
            raise
        except HatError as exc:
            aside = path.with_name(f"damaged-{path.name}")
            if set_aside:  # only the main process of a multi-GPU run moves files
                if aside.exists():
                    shutil.rmtree(aside)  # an older damaged copy of the same update
                os.replace(path, aside)
            notes.append(f"{path.name} could not be loaded ({str(exc).rstrip('.')}); it was moved to {aside.name}")
            continue
        return path, state, notes
    if found:
        raise HatError(f"No checkpoint in {save_dir} can be loaded (each was moved to damaged-<name>); "
                       "pass --no-resume to start over.")
    return None


# ------------------------------------------------------------------------------------------------ averaging
def average_checkpoints(paths: Iterable[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights of several checkpoints (float64 accumulation, original dtypes)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise HatError("No checkpoints to average.")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        tensors = load_tensors(path / WEIGHTS_FILE)
        if total and set(tensors) != set(total):
            raise HatError(f"Checkpoint {path} holds different parameters from {paths[0]}; they cannot be averaged.")
        for name, tensor in tensors.items():
            if name not in total:
                dtypes[name] = tensor.dtype
                total[name] = tensor.to(torch.float64)
            else:
                if tensor.shape != total[name].shape:
                    raise HatError(f"Checkpoint {path}: '{name}' has another shape than in {paths[0]}.")
                total[name] += tensor.to(torch.float64)
    return {name: (t / len(paths)).to(dtypes[name]) for name, t in total.items()}


def average_last(save_dir: str | Path, n: int) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """Average the newest ``n`` checkpoints of ``save_dir``."""
    found = list_checkpoints(save_dir)
    if not found:
        raise HatError(f"No checkpoints in {save_dir} to average.")
    chosen = found[-n:]
    return average_checkpoints(chosen), chosen


EARLIER_RUN_ITEMS = (LAST_POINTER, "model", "train_log.jsonl")


def set_aside_earlier_run(save_dir: str | Path) -> Path | None:
    """Move an earlier run's checkpoints, pointer, final model and log into ``earlier-run-<time>/`` inside
    ``save_dir`` (starting over never deletes anything); the folder's name, or None when there was no run."""

    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return None
    items = [p for p in save_dir.iterdir() if CHECKPOINT_RE.match(p.name) or p.name.startswith("damaged-checkpoint_")]
    items += [save_dir / name for name in EARLIER_RUN_ITEMS if (save_dir / name).exists()]
    if not any(CHECKPOINT_RE.match(p.name) for p in items):
        return None
    base = save_dir / time.strftime("earlier-run-%Y%m%d-%H%M%S")
    target, n = base, 1
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}-{n}")
    target.mkdir()
    for item in items:
        os.replace(item, target / item.name)
    return target


def sweep_partial(save_dir: str | Path) -> None:
    """Remove half-written checkpoint folders of killed runs (the caller holds the save dir's lock, so
    none belongs to a live writer)."""
    save_dir = Path(save_dir)
    if not save_dir.is_dir():
        return
    for child in sorted(save_dir.iterdir()):
        if not child.name.startswith(".checkpoint_"):
            continue
        name = child.name[1:].split(".", 1)[0]
        if ".old-" in child.name and not (save_dir / name).exists():
            os.replace(child, save_dir / name)  # killed mid-swap: the complete earlier copy goes back
        elif ".tmp-" in child.name or ".old-" in child.name:
            shutil.rmtree(child, ignore_errors=True)
