"""SuperTransformer and SubTransformer training (docs/METHOD.md §3), resumable and multi-GPU.

One loop serves both kinds of run:

- ``super``: every update trains one SubTransformer drawn uniformly from the task's search space with
  ``space.sample(random.Random(arch_seed_offset + update))`` (HAT reseeds the *global* RNG with the update
  number; a local Random gives the same sequence without touching anyone else's randomness); with
  ``sampling: sandwich`` the largest, the smallest and random SubTransformers share every update, the others
  optionally distilled from the largest (sampling.py);
- ``sub``: one fixed architecture, as a compact model (default: init and memory fit its real shapes) or,
  with ``inside_supernet``, as a slice of a freshly initialised super-shaped model (the published way, docs/METHOD.md §3.3).

Exact resumption: every source of randomness is a function of (seed, update, micro-batch index) —
the architecture, the dropout masks (the torch RNG is reseeded before each micro-batch), the data order
(``token_batches`` depends only on (seed, epoch)) — and the checkpoint records the weights, the optimizer
state and the position in the epoch. The lr schedule is a pure function of the update count.

Speed (see bench/): big token batches, bf16 autocast, one flat fp32 gradient buffer (so accumulation,
the cross-GPU all-reduce, clipping and zeroing are single kernels), fused AdamW, batches collated and
pinned by a background thread, and no host synchronisation inside an update except the model's own.

Multi-GPU (``torchrun``): every rank sees the whole list of an update's batches and takes its shard
(``batches[rank::world]``); the token count of the whole update is known on the host, so each rank
scales its loss by it and one all-reduce of the flat gradient buffer yields the global mean
(fairseq's ``no_c10d``: parameters that the sampled SubTransformer does not use simply hold zeros).
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from hat_cli.core.compiled import compile_warnings
from hat_cli.core.devices import resolve_device
from hat_cli.core.errors import HatError
from hat_cli.core.files import naming
from hat_cli.core.locks import exclusive
from hat_cli.core.paths import FINAL_MODEL_DIR
from hat_cli.data.batching import Batch, collate, load_split, split_prefix, token_batches
from hat_cli.data.indexed import dataset_exists
from hat_cli.model.directory import save_model
from hat_cli.model.space import SearchSpace, SubTransformerConfig
from hat_cli.model.transformer import TransformerModel, extract_subtransformer
from hat_cli.tasks import Task
from hat_cli.training import checkpoint as ckpt
from hat_cli.training.config import TrainingConfig
from hat_cli.training.loss import LN2, label_smoothed_nll_loss, training_losses
from hat_cli.training.sampling import plain_transformers_to_draw, update_architectures
from hat_cli.training.schedule import make_schedule

MAX_POSITIONS = 1024  # fairseq's default max source/target positions: longer pairs are dropped from training


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class TrainRun:
    """What to train and where; everything else is in ``config``."""

    task: Task
    kind: str  # "super" | "sub"
    data_dir: Path
    save_dir: Path
    config: TrainingConfig
    space: SearchSpace
    arch: Optional[SubTransformerConfig] = None  # the SubTransformer of a "sub" run
    inside_supernet: bool = False
    device: Optional[str] = None
    resume: bool = True


@dataclass
class TrainResult:
    checkpoint: Path  # the final model directory (loadable by model.directory.load_model / `hat test`)
    last_checkpoint: Optional[Path]  # the resumable training checkpoint
    updates: int
    valid_loss: dict[str, float]  # per validated architecture, label-smoothed, bits per token
    valid_nll_loss: dict[str, float]
    tokens_per_second: float
    train_seconds: float
    target_tokens: int
    resumed_from: Optional[int] = None
    precision: str = "fp32"
    world_size: int = 1
    averaged: list[str] = field(default_factory=list)
    final_checkpoint: Optional[str] = None  # with final_model "best": the checkpoint the final model is
    warnings: list[str] = field(default_factory=list)


@dataclass
class Progress:
    """What the loop reports every ``log_every`` updates (and after validation)."""

    updates: int
    max_updates: int
    loss: float  # bits per token, label-smoothed, over the last log window
    nll_loss: float
    lr: float
    tokens_per_second: float
    grad_norm: float
    valid_loss: Optional[dict[str, float]] = None


# ------------------------------------------------------------------------------------------------ helpers
def resolve_precision(precision: Optional[str], device: torch.device) -> str:
    """bf16 autocast on GPUs that have it, else fp32; fp16 (with loss scaling) only when asked for."""
    if precision is None:
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise HatError("fp16 training needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    return precision


def autocast_context(precision: str, device: torch.device):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def micro_batch_seed(seed: int, updates: int, index: int) -> int:
    """The torch RNG seed of micro-batch ``index`` (over all GPUs) of update ``updates``.

    Dropout masks then depend only on (seed, update, batch), so a resumed run and a run on another
    number of GPUs draw the same masks for the same batch (fairseq reseeds with seed + update)."""
    return (seed * 1_000_003 + updates * 1_009 + index) % (2**63 - 1)


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: Optional[str]) -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
        if use_nccl:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return DistributedContext(rank, world, local_rank)


# ------------------------------------------------------------------------------------------------ data
def require_data(task: Task, data_dir: Path) -> None:
    hint = f"run `hat data --task {task.name}` first or pass --data-dir"
    if not data_dir.is_dir():
        raise HatError(f"No prepared data for task '{task.name}' at {data_dir}; {hint}.")
    for split in ("train", "valid"):
        for lang in (task.src, task.tgt):
            prefix = split_prefix(data_dir, split, task.src, task.tgt, lang)
            if not dataset_exists(prefix):
                raise HatError(f"The data directory {data_dir} lacks the '{split}' split ({prefix.name}.bin/.idx); {hint}.")


@dataclass
class UpdateGroup:
    """The batches of one update: the global list (all GPUs) and where the epoch stands after it."""

    epoch: int
    offset_after: int  # batches of ``epoch`` consumed once this update is done
    ntokens: int  # target tokens of the whole update (all GPUs)
    first_index: int  # global index of this rank's first batch within the update
    batches: list  # this rank's collated (pinned) batches


class UpdateStream:
    """Yields the updates of training from a position (epoch, batches consumed), collating ahead of use.

    The batch list of an epoch depends only on (seed, epoch); an update takes the next
    ``update_freq * world_size`` batches (the last one of an epoch may be shorter, as fairseq's
    GroupedIterator), and this rank collates ``batches[rank::world]`` of it.
    """

    def __init__(self, data, cfg: TrainingConfig, dist_ctx: DistributedContext, epoch: int, offset: int,
                 pin: bool, prefetch: int = 2):
        self.data = data
        self.cfg = cfg
        self.ctx = dist_ctx
        self.epoch, self.offset = epoch, offset
        self.pin = pin
        self.group_size = cfg.update_freq * dist_ctx.world_size
        self._tgt_sizes = np.asarray(data.tgt_sizes, dtype=np.int64)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="hat-batches", daemon=True)
        self._thread.start()

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        batches = token_batches(self.data.src_sizes, self.data.tgt_sizes, self.cfg.max_tokens, shuffle=True,
                                seed=self.cfg.seed, epoch=epoch, max_positions=MAX_POSITIONS)
        if not batches:
            raise HatError("The training split has no sentence pairs short enough to train on.")
        return batches

    def _produce(self) -> None:
        try:
            epoch, offset = self.epoch, self.offset
            batches = self._epoch_batches(epoch)
            while not self._stop.is_set():
                if offset >= len(batches):
                    epoch, offset = epoch + 1, 0
                    batches = self._epoch_batches(epoch)
                group = batches[offset : offset + self.group_size]
                offset += len(group)
                mine = []
                for i in range(self.ctx.rank, len(group), self.ctx.world_size):
                    batch = collate(self.data, group[i])
                    if self.pin:
                        batch = _pin(batch)
                    mine.append(batch)
                ntokens = int(sum(int(self._tgt_sizes[g].sum()) for g in group))
                item = UpdateGroup(epoch, offset, ntokens, self.ctx.rank, mine)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # surfaced in the training thread
            self._queue.put(exc)

    def __iter__(self) -> Iterator[UpdateGroup]:
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=5)


def _pin(batch):
    return Batch(ids=batch.ids, src_tokens=batch.src_tokens.pin_memory(), src_lengths=batch.src_lengths,
                 prev_output_tokens=batch.prev_output_tokens.pin_memory(), target=batch.target.pin_memory(),
                 ntokens=batch.ntokens, nsentences=batch.nsentences)


# ------------------------------------------------------------------------------------------------ model + optimizer
def build_model(run: TrainRun, src_vocab: int, tgt_vocab: int):
    cfg = run.config
    kwargs = dict(dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
                  hat_dropout_quirk=cfg.unscaled_encoder_attn_dropout)
    shape, share = run.space.shape, run.space.share_all_embeddings
    if run.kind == "sub" and not run.inside_supernet:
        return TransformerModel.subtransformer(run.arch, shape, src_vocab, tgt_vocab, share, **kwargs)
    return TransformerModel.supertransformer(shape, src_vocab, tgt_vocab, share, **kwargs)


class FlatGradients:
    """All gradients as views of one fp32 buffer: one kernel to zero, clip or all-reduce them.

    Autograd accumulates into an existing ``.grad`` in place, so the views stay views. Every parameter
    always has a (possibly zero) gradient, which also makes Adam move parameters the sampled
    SubTransformer did not use by their momentum — what fairseq's FP16Optimizer does for HAT's WMT runs.
    """

    def __init__(self, params: list[torch.nn.Parameter]):
        self.params = params
        total = sum(p.numel() for p in params)
        self.buffer = torch.zeros(total, dtype=torch.float32, device=params[0].device)
        offset = 0
        for p in params:
            p.grad = self.buffer[offset : offset + p.numel()].view_as(p)
            offset += p.numel()

    def zero_(self) -> None:
        self.buffer.zero_()

    def norm(self) -> torch.Tensor:
        return torch.linalg.vector_norm(self.buffer)

    def clip_(self, max_norm: float, norm: torch.Tensor) -> None:
        """fairseq's clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1 (no host sync)."""
        coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        self.buffer.mul_(coef)

    def all_reduce_(self) -> None:
        import torch.distributed as dist

        dist.all_reduce(self.buffer)


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainingConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (fairseq's Adam: p -= wd * lr * p), fused on CUDA."""
    kwargs: dict[str, Any] = dict(lr=cfg.warmup_init_lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay)
    if device.type == "cuda":
        kwargs["fused"] = True
    else:  # one multi-tensor kernel per step instead of a Python loop over ~180 parameters
        kwargs["foreach"] = True
    return torch.optim.AdamW(params, **kwargs)


# ------------------------------------------------------------------------------------------------ validation
class Validator:
    """Label-smoothed valid loss of fixed architectures; batches collated once and kept on the device."""

    def __init__(self, data, cfg: TrainingConfig, device: torch.device, precision: str, dist_ctx: DistributedContext,
                 loss_function: Optional[Callable] = None):
        self.cfg, self.device, self.precision, self.ctx = cfg, device, precision, dist_ctx
        self.loss_function = loss_function or label_smoothed_nll_loss
        batches = token_batches(data.src_sizes, data.tgt_sizes, cfg.max_tokens, shuffle=False, max_positions=MAX_POSITIONS)
        mine = batches[dist_ctx.rank :: dist_ctx.world_size]
        self.batches = [collate(data, b).to(device) for b in mine]
        self.padding_idx = data.tgt_dict.pad()

    @torch.no_grad()
    def loss(self, model, config: SubTransformerConfig) -> tuple[float, float]:
        was_training = model.training
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        for batch in self.batches:
            with autocast_context(self.precision, self.device):
                logits = model(batch.src_tokens, batch.prev_output_tokens, config)
            loss, nll = self.loss_function(logits, batch.target, self.cfg.label_smoothing, self.padding_idx)
            totals[0] += loss.double()
            totals[1] += nll.double()
            totals[2] += batch.ntokens
        if self.ctx.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(totals)
        model.train(was_training)
        loss_sum, nll_sum, ntok = totals.tolist()
        ntok = max(ntok, 1.0)
        return loss_sum / ntok / LN2, nll_sum / ntok / LN2


# ------------------------------------------------------------------------------------------------ the loop
def validation_configs(run: TrainRun) -> dict[str, SubTransformerConfig]:
    if run.kind == "super":
        # HAT validates get_represent_configs' largest and smallest (arbitrary attention 1), docs/METHOD.md §3.1.
        return {"largest": run.space.largest(), "smallest": run.space.smallest()}
    return {"arch": run.arch}


def train(run: TrainRun, on_progress: Optional[Callable[[Progress], None]] = None) -> TrainResult:
    """Train until ``config.max_updates``; resumes from the newest checkpoint in ``save_dir`` that loads, or
    (``resume=False``) moves an earlier run in ``save_dir`` aside and starts from scratch.

    The save dir is locked for the run (by the main process): a second training into it is refused."""
    if run.kind == "super" and run.config.sandwich_hand_scaled:
        plain_transformers_to_draw(run.space)  # refused before the lock or anything else touches the save dir
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(run, on_progress)
    with exclusive(run.save_dir, "a training run", "wait for it to finish or choose another --save-dir", folder=True):
        ckpt.sweep_partial(run.save_dir)
        return _train(run, on_progress)


def _train(run: TrainRun, on_progress: Optional[Callable[[Progress], None]] = None) -> TrainResult:
    cfg = run.config
    if run.kind not in ("super", "sub"):
        raise HatError(f"Unknown training kind '{run.kind}'.")
    if run.kind == "sub":
        if run.arch is None:
            raise HatError("SubTransformer training needs an architecture (--arch).")
        if not run.arch.fits(run.space.shape):
            raise HatError(f"The architecture does not fit the super shape of search space '{run.space.name}'.")
    data_dir, save_dir = Path(run.data_dir), Path(run.save_dir)
    require_data(run.task, data_dir)

    dist_ctx = init_distributed(run.device)
    device = resolve_device(run.device, dist_ctx.local_rank)
    precision = resolve_precision(cfg.precision, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    train_data = load_split(data_dir, "train", run.task.src, run.task.tgt)
    valid_data = load_split(data_dir, "valid", run.task.src, run.task.tgt)
    if run.space.share_all_embeddings and train_data.src_dict != train_data.tgt_dict:
        raise HatError(f"Task '{run.task.name}' shares embeddings, so dict.{run.task.src}.txt and dict.{run.task.tgt}.txt "
                       f"in {data_dir} must be one joined dictionary.")
    padding_idx = train_data.tgt_dict.pad()

    torch.manual_seed(cfg.seed)  # parameter init depends only on the seed
    model = build_model(run, len(train_data.src_dict), len(train_data.tgt_dict)).to(device)
    model.train()
    model.compiled_norms = cfg.compiled_norms is True  # auto (None) is off, see TrainingConfig
    params = [p for p in model.parameters() if p.requires_grad]
    grads = FlatGradients(params)
    optimizer = make_optimizer(params, cfg, device)
    scaler = torch.amp.GradScaler("cuda", init_scale=128.0, growth_interval=max(1, 2**14 // (dist_ctx.world_size * cfg.update_freq))) \
        if precision == "fp16" else None
    schedule = make_schedule(cfg.lr_scheduler, lr=cfg.lr, warmup_updates=cfg.warmup_updates, max_updates=cfg.max_updates,
                             warmup_init_lr=cfg.warmup_init_lr, min_lr=cfg.min_lr)

    # ---- resume
    updates, epoch, offset, resumed_from = 0, 1, 0, None
    warnings: list[str] = []
    previous = None

    def same_run(path: Path, state: dict) -> None:
        saved_run = state.get("run", {}) if isinstance(state.get("run"), dict) else {}
        for key, now in (("task", run.task.name), ("kind", run.kind), ("arch", run.arch.to_dict() if run.arch else None)):
            if key in saved_run and saved_run[key] != now:
                raise ckpt.ForeignCheckpoint(f"{path} belongs to another run ({key} {saved_run[key]!r}, this run {now!r}); "
                                             "choose another --save-dir or pass --no-resume to start over.")
        try:
            int(state["position"]["epoch"]), int(state["position"]["offset"])
        except (KeyError, TypeError, ValueError):
            raise HatError(f"{path / ckpt.STATE_FILE} records no position in the training data.") from None

    if run.resume:
        found = ckpt.load_newest_loadable(save_dir, model, optimizer, accept=same_run, set_aside=dist_ctx.is_main)
        if found is not None:
            previous, state, damaged = found
            if damaged:
                warnings += damaged + [f"resumed from {previous.name}, the newest checkpoint that loads."]
            updates, resumed_from = int(state["updates"]), int(state["updates"])
            epoch, offset = int(state["position"]["epoch"]), int(state["position"]["offset"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            warnings += _changed_settings(state, cfg, dist_ctx.world_size, model.compiled_norms)
    elif dist_ctx.is_main:
        moved = ckpt.set_aside_earlier_run(save_dir)
        if moved is not None:
            warnings.append(f"--no-resume: the earlier run in {save_dir} (its checkpoints, final model and log) was moved "
                            f"to {moved}; nothing was deleted.")

    smoothed_loss, distillation_loss = training_losses(
        cfg.compiled_loss if cfg.compiled_loss is not None else device.type == "cuda")
    validator = Validator(valid_data, cfg, device, precision, dist_ctx, smoothed_loss)
    val_configs = validation_configs(run)
    fixed_config = run.arch if run.kind == "sub" else None
    autocast = autocast_context(precision, device)

    meta = _run_metadata(run, train_data, dist_ctx)

    def save(updates_done: int, position: tuple[int, int], metrics: dict[str, Any]) -> Optional[Path]:
        if not dist_ctx.is_main:
            return None
        state = {"position": {"epoch": position[0], "offset": position[1]}, "config": cfg.to_dict(),
                 "schedule": schedule.to_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
                 "world_size": dist_ctx.world_size, "run": meta, "metrics": metrics,
                 "compiled_norms": model.compiled_norms}
        return ckpt.save_checkpoint(save_dir, updates_done, model, optimizer, state, keep_last=cfg.keep_last)

    def validate() -> tuple[dict[str, float], dict[str, float]]:
        losses, nlls = {}, {}
        for name, config in val_configs.items():
            losses[name], nlls[name] = validator.loss(model, config)
        return losses, nlls

    # ---- loop
    stream = UpdateStream(train_data, cfg, dist_ctx, epoch, offset, pin=device.type == "cuda")
    window_loss = torch.zeros((), dtype=torch.float32, device=device)
    window_nll = torch.zeros((), dtype=torch.float32, device=device)
    window_norm = torch.zeros((), dtype=torch.float32, device=device)
    window_tokens, window_updates = 0, 0
    total_tokens, train_seconds = 0, 0.0
    valid_loss: dict[str, float] = {}
    valid_nll: dict[str, float] = {}
    last_saved: Optional[Path] = previous
    position = (epoch, offset)
    lr = schedule.lr(updates)
    _sync(device)
    window_start = time.perf_counter()
    try:
        groups = iter(stream)
        while updates < cfg.max_updates:
            group = next(groups)
            configs = [fixed_config] if fixed_config else update_architectures(
                run.space, cfg.sampling, updates, cfg.arch_seed_offset, cfg.sandwich_random, cfg.sandwich_hand_scaled)
            distill = cfg.distill if len(configs) > 1 else 0.0
            lr = schedule.lr(updates)
            for g in optimizer.param_groups:
                g["lr"] = lr
            # The SubTransformers of a sandwich update share the gradient equally, so its size (and what
            # clipping and the lr mean) stays that of one SubTransformer's update.
            inv_tokens = 1.0 / max(group.ntokens, 1) / len(configs)
            for k, batch in enumerate(group.batches):
                torch.manual_seed(micro_batch_seed(cfg.seed, updates, group.first_index + k * dist_ctx.world_size))
                batch = batch.to(device)
                teacher = None
                for i, config in enumerate(configs):
                    with autocast:
                        logits = model(batch.src_tokens, batch.prev_output_tokens, config)
                    loss, nll = smoothed_loss(logits, batch.target, cfg.label_smoothing, padding_idx)
                    objective = loss
                    if distill > 0:
                        if i == 0:  # the largest SubTransformer teaches the others on this batch (its logits)
                            teacher = logits.detach()
                        else:
                            kd = distillation_loss(logits, teacher, batch.target, padding_idx)
                            objective = (1.0 - distill) * loss + distill * kd
                    scaled = objective * inv_tokens
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                    window_loss += loss.detach() / len(configs)
                    window_nll += nll.detach() / len(configs)
                    del logits, loss, nll, scaled, objective
                del teacher
            if dist_ctx.world_size > 1:
                grads.all_reduce_()
            if scaler is not None:
                scaler.unscale_(optimizer)
            norm = grads.norm()
            if cfg.clip_norm > 0:
                grads.clip_(cfg.clip_norm, norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            grads.zero_()
            window_norm += norm
            updates += 1
            position = (group.epoch, group.offset_after)
            window_tokens += group.ntokens
            window_updates += 1

            log_now = updates % cfg.log_every == 0 or updates == cfg.max_updates
            validate_now = updates % cfg.validate_every == 0 or updates == cfg.max_updates
            save_now = updates % cfg.save_interval_updates == 0 or updates == cfg.max_updates
            if log_now or validate_now or save_now:
                # One host sync per window: losses, norm and an honest clock.
                sums = torch.stack([window_loss, window_nll])
                if dist_ctx.world_size > 1:  # each rank summed its own batches; the token count is global
                    import torch.distributed as dist

                    dist.all_reduce(sums)
                loss_sum, nll_sum = sums.tolist()
                loss_bits = loss_sum / max(window_tokens, 1) / LN2
                nll_bits = nll_sum / max(window_tokens, 1) / LN2
                mean_norm = window_norm.item() / max(window_updates, 1)
                elapsed = time.perf_counter() - window_start
                train_seconds += elapsed
                total_tokens += window_tokens
                report = Progress(updates, cfg.max_updates, loss_bits, nll_bits, lr, window_tokens / max(elapsed, 1e-9), mean_norm)
                if dist_ctx.is_main:
                    _append_log(save_dir, report)
                    if on_progress is not None:
                        on_progress(report)
                if not math.isfinite(loss_bits):
                    raise HatError(f"The training loss became {loss_bits} at update {updates}; lower the learning rate "
                                   "or use bf16/fp32 instead of fp16.")
                window_loss.zero_(); window_nll.zero_(); window_norm.zero_()
                window_tokens, window_updates = 0, 0
                if validate_now:
                    valid_loss, valid_nll = validate()
                    if dist_ctx.is_main:
                        report = Progress(updates, cfg.max_updates, loss_bits, nll_bits, lr, 0.0, mean_norm, dict(valid_loss))
                        _append_log(save_dir, report)
                        if on_progress is not None:
                            on_progress(report)
                if save_now:
                    saved = save(updates, position, {"valid_loss": valid_loss, "train_loss": loss_bits})
                    last_saved = saved or last_saved
                _sync(device)
                window_start = time.perf_counter()
    finally:
        stream.close()

    if dist_ctx.world_size > 1:  # every rank reads the checkpoints the main rank has just written
        import torch.distributed as dist

        dist.barrier()
    warnings += compile_warnings()
    averaged, final_from = _load_final_weights(run.config, model, save_dir)
    if averaged or final_from or not valid_loss:
        # Validate what is kept: an average is a new model, an earlier checkpoint has no NLL on record, and
        # a run resumed at max_updates trained nothing.
        valid_loss, valid_nll = validate()
    final_dir = None
    if dist_ctx.is_main:
        final_dir = _write_final_model(run, model, save_dir, meta, valid_loss, updates, averaged, final_from)
    if dist_ctx.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(
        checkpoint=final_dir or save_dir / FINAL_MODEL_DIR,
        last_checkpoint=last_saved,
        updates=updates,
        valid_loss=valid_loss,
        valid_nll_loss=valid_nll,
        tokens_per_second=total_tokens / train_seconds if train_seconds > 0 else 0.0,
        train_seconds=train_seconds,
        target_tokens=total_tokens,
        resumed_from=resumed_from,
        precision=precision,
        world_size=dist_ctx.world_size,
        averaged=averaged,
        final_checkpoint=final_from,
        warnings=warnings,
    )


def _append_log(save_dir: Path, report: Progress) -> None:
    """One JSON line per log window / validation in ``<save_dir>/train_log.jsonl`` (an append-only log;
    after a resume, windows past the last checkpoint appear twice, the later lines being the ones kept)."""
    import json
    from dataclasses import asdict

    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / "train_log.jsonl"
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({**asdict(report), "time": time.time()}) + "\n")
    except OSError as exc:  # a full disk: name the log
        raise naming(exc, path) from None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _changed_settings(state: dict[str, Any], cfg: TrainingConfig, world: int, compiled_norms: bool) -> list[str]:
    """Settings whose change makes the resumed run differ from an uninterrupted one (said, not refused)."""
    saved, saved_world = state.get("config", {}), state.get("world_size", 1)
    notes = []
    names = ["seed", "max_tokens", "lr_scheduler", "lr", "warmup_updates", "arch_seed_offset", "dropout", "sampling", "distill"]
    if cfg.sampling == "sandwich" or saved.get("sampling") == "sandwich":  # meaningless under HAT's rule
        names += ["sandwich_random", "sandwich_hand_scaled"]
    defaults = TrainingConfig()
    for name in names:
        # A checkpoint written before a setting existed ran with its default (e.g. no hand-scaled draws).
        before = saved.get(name, getattr(defaults, name)) if saved else getattr(cfg, name)
        if before != getattr(cfg, name):
            notes.append(f"{name} changed from {before} to {getattr(cfg, name)} since the checkpoint.")
    if "update_freq" in saved and saved["update_freq"] * saved_world != cfg.update_freq * world:
        notes.append("update_freq x GPUs changed since the checkpoint, so updates hold a different number of batches.")
    # What ran, not what was asked ("auto"); checkpoints from before the switch existed ran the norms eagerly.
    if bool(state.get("compiled_norms", False)) != compiled_norms:
        notes.append(f"compiled_norms is {'on' if compiled_norms else 'off'} now and was not when the checkpoint was "
                     "written, so dropout masks are drawn differently from here on.")
    return notes


def _run_metadata(run: TrainRun, data, dist_ctx: DistributedContext) -> dict[str, Any]:
    return {
        "task": run.task.name,
        "kind": run.kind,
        "space": run.space.name,
        "arch": run.arch.to_dict() if run.arch is not None else None,
        "inside_supernet": run.inside_supernet,
        "data_dir": str(run.data_dir),
        "dictionaries": {run.task.src: data.src_dict.sha256(), run.task.tgt: data.tgt_dict.sha256()},
        "world_size": dist_ctx.world_size,
    }


def _load_final_weights(cfg: TrainingConfig, model, save_dir: Path) -> tuple[list[str], Optional[str]]:
    """Put the final model's weights into ``model``: the last ones (default), the average of the last N
    checkpoints, or the kept checkpoint with the lowest validation loss. Returns the averaged checkpoints'
    names and the chosen checkpoint's name."""
    if cfg.average_last > 1:  # (load_model_tensors copies across devices)
        tensors, chosen = ckpt.average_last(save_dir, cfg.average_last)
        ckpt.load_model_tensors(model, tensors, str(save_dir))
        return [p.name for p in chosen], None
    if cfg.final_model == "best":
        found = ckpt.best_checkpoint(save_dir)
        if found is None:
            raise HatError(f"No checkpoint in {save_dir} recorded a validation loss, so there is no best one to keep.")
        best = found[0]
        ckpt.load_weights(best, model)
        return [], best.name
    return [], None


def _write_final_model(run: TrainRun, model, save_dir: Path, meta: dict[str, Any], valid_loss: dict[str, float],
                       updates: int, averaged: list[str], final_from: Optional[str]) -> Path:
    """``<save_dir>/model``: the final model (see _load_final_weights) as a model directory."""
    cfg = run.config
    if run.kind == "sub" and run.inside_supernet:
        model = extract_subtransformer(model, run.arch)  # exact compact copy of the trained slice (docs/METHOD.md §9.3)
    training = {**cfg.to_dict(), "kind": run.kind, "inside_supernet": run.inside_supernet, "updates": updates,
                "valid_loss": valid_loss, "averaged_checkpoints": averaged, "final_checkpoint": final_from}
    metadata = {"task": meta["task"], "dictionaries": meta["dictionaries"], "training": training, "seed": cfg.seed}
    return save_model(model, save_dir / FINAL_MODEL_DIR, metadata)
