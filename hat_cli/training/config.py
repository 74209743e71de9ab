"""Training hyper-parameters: the options of a run, resolved from the task record's defaults plus overrides.

Resolution order: task defaults for the kind of run (``super`` or ``sub``) -> a YAML file of overrides
(``--config``) -> explicit CLI options. The resolved ``TrainingConfig`` is stored in every checkpoint.
No torch here: the CLI resolves configs before importing the trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from hat_cli.core.errors import HatError
from hat_cli.tasks import get_task
from hat_cli.training.sampling import check_sampling

PRECISIONS = ("bf16", "fp16", "fp32")
FINAL_MODELS = ("last", "best")


@dataclass(frozen=True)
class TrainingConfig:
    # optimisation (HAT: fairseq Adam with decoupled weight decay)
    max_updates: int = 40000
    warmup_updates: int = 10000
    lr_scheduler: str = "cosine"  # "cosine" | "inverse_sqrt"
    lr: float = 1e-3  # peak lr (fairseq's --max-lr for cosine, --lr for inverse_sqrt)
    min_lr: float = 1e-7  # cosine floor (fairseq's --lr for cosine)
    warmup_init_lr: float = 1e-7
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 0.0  # 0 disables clipping
    label_smoothing: float = 0.1
    # regularisation (super-width values; the model scales them per SubTransformer, docs/METHOD.md §2.5)
    dropout: float = 0.3
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    # HAT's encoder self-attention residual dropout is unscaled (docs/METHOD.md §2.5); kept for faithfulness.
    unscaled_encoder_attn_dropout: bool = True
    # batching
    max_tokens: int = 4096  # per micro-batch per GPU (source or target side, whichever is longer)
    update_freq: int = 16  # micro-batches accumulated per update per GPU
    # precision: None = bf16 on GPUs that support it, else fp32 (fp16 on older GPUs is opt-in)
    precision: str | None = None
    # bookkeeping
    seed: int = 1
    # The SubTransformer of update n is space.sample(random.Random(arch_seed_offset + n)); 0 reproduces HAT's
    # sequence (HAT reseeds the global RNG with n; we use a local Random instead).
    arch_seed_offset: int = 0
    # Which SubTransformers a SuperTransformer update trains (sampling.py): "random" is HAT's one per update;
    # "sandwich" trains the largest, the smallest and `sandwich_random` random ones on the same batches, and
    # with distill > 0 the others also learn from the largest one's predictions (in-place distillation).
    sampling: str = "random"
    sandwich_random: int = 2
    # plain Transformers (space.hand_scaled()) drawn per sandwich update after the random ones; 0 = none
    sandwich_hand_scaled: int = 0
    distill: float = 0.0
    save_interval_updates: int = 1000
    keep_last: int = 5
    validate_every: int = 1000  # updates; validation also runs at the end
    log_every: int = 50  # updates between host syncs for the progress line
    average_last: int = 0  # > 0: the final model is the average of the last N checkpoints
    # "best": the final model is the kept checkpoint with the lowest validation loss (small corpora overfit)
    final_model: str = "last"
    # The label-smoothed loss (and with --distill the distillation term) computed from the logits by one
    # torch.compile'd function, which never writes fp32 tensors of the logits' size (1.3x the training speed at
    # 65,536 tokens on an H100; issue 16, bench/RESULTS.md); off, the same functions run uncompiled.
    # None: on for CUDA GPUs.
    compiled_loss: bool | None = None
    # The residual step after every sublayer, norm(x + dropout(h)), compiled into one kernel each way instead of
    # three-plus eager ones over the whole activation (issue 16). None ("auto") is off for now: in training it
    # measured +1% at 65,536 tokens on an H100, and its gradients are checked against eager on the CPU only.
    compiled_norms: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        self.check()

    def check(self) -> None:
        positive = ("max_updates", "max_tokens", "update_freq", "save_interval_updates", "validate_every", "log_every", "keep_last")
        for name in positive:
            if getattr(self, name) < 1:
                raise HatError(f"Training option {name} must be at least 1, got {getattr(self, name)}.")
        if self.warmup_updates < 0:
            raise HatError(f"Training option warmup_updates must not be negative, got {self.warmup_updates}.")
        if self.lr_scheduler not in ("cosine", "inverse_sqrt"):
            raise HatError(f"Unknown lr scheduler '{self.lr_scheduler}'; choose cosine or inverse_sqrt.")
        if self.lr_scheduler == "cosine" and self.max_updates <= self.warmup_updates:
            raise HatError(
                f"The cosine schedule needs max_updates ({self.max_updates}) larger than warmup_updates ({self.warmup_updates})."
            )
        if self.lr_scheduler == "inverse_sqrt" and self.warmup_updates < 1:
            raise HatError("The inverse_sqrt schedule needs warmup_updates of at least 1.")
        if self.lr <= 0:
            raise HatError(f"The learning rate must be positive, got {self.lr}.")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise HatError(f"Unknown precision '{self.precision}'; choose one of: {', '.join(PRECISIONS)}.")
        for name in ("dropout", "attention_dropout", "activation_dropout", "label_smoothing"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise HatError(f"Training option {name} must be in [0, 1), got {value}.")
        if len(self.adam_betas) != 2:
            raise HatError(f"adam_betas must be two numbers, got {list(self.adam_betas)}.")
        if self.average_last < 0:
            raise HatError(f"average_last must not be negative, got {self.average_last}.")
        if self.final_model not in FINAL_MODELS:
            raise HatError(f"Unknown final model '{self.final_model}'; choose one of: {', '.join(FINAL_MODELS)}.")
        check_sampling(self.sampling, self.sandwich_random, self.distill, self.sandwich_hand_scaled)
        if self.final_model == "best" and self.average_last > 1:
            raise HatError("Choose either the best checkpoint or an average of the last ones as the final model, not both.")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainingConfig":
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def replace(self, **changes: Any) -> "TrainingConfig":
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainingConfig)}

# fairseq / HAT option names accepted in override files, mapped to ours.
_ALIASES = {
    "max_update": "max_updates",
    "max_lr": "lr",
    "warmup_updates": "warmup_updates",
    "clip_norm": "clip_norm",
    "label_smoothing": "label_smoothing",
    "adam_betas": "adam_betas",
    "save_interval_updates": "save_interval_updates",
    "keep_last_epochs": "keep_last",
}

def published_defaults(task: str, kind: str) -> dict[str, Any]:
    """The task record's defaults for a ``super`` or ``sub`` run (hat_cli/tasks/builtin.py holds the built-ins')."""
    return get_task(task).training_defaults(kind)



def _normalise_key(key: str) -> str:
    name = str(key).strip().replace("-", "_")
    return _ALIASES.get(name, name)


# On/off options whose default (None, or "auto" in a file) lets hat decide: compiled_loss by the device,
# compiled_norms off for now (see TrainingConfig).
_AUTO_SWITCHES = ("compiled_loss", "compiled_norms")


def _coerce(name: str, value: Any, source: str) -> Any:
    current = _FIELDS[name].default
    try:
        if name == "adam_betas":
            if isinstance(value, str):  # fairseq writes '(0.9, 0.98)'
                value = [v for v in value.strip("()[] ").split(",") if v.strip()]
            return tuple(float(v) for v in value)
        if name == "precision":
            return None if value in (None, "auto") else str(value)
        if name in _AUTO_SWITCHES and value in (None, "auto"):
            return None
        if isinstance(current, bool) or name in _AUTO_SWITCHES:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(current, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise HatError(f"{source}: option '{name}' cannot be {value!r}.") from None


def normalise_overrides(overrides: Mapping[str, Any], source: str = "the overrides") -> dict[str, Any]:
    """Map option names (ours, hyphenated or fairseq's) to TrainingConfig fields with checked types."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        name = _normalise_key(key)
        if name not in _FIELDS:
            allowed = ", ".join(sorted(_FIELDS))
            raise HatError(f"{source}: unknown training option '{key}'; allowed options are: {allowed}.")
        out[name] = _coerce(name, value, source)
    return out


def load_overrides(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise HatError(f"Training config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise HatError(f"Training config file {path} is not valid YAML: {getattr(exc, 'problem', exc)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HatError(f"Training config file {path} must be a mapping of option: value.")
    return normalise_overrides(data, str(path))


def resolve_training_config(task: str, kind: str, config_file: str | Path | None = None,
                            cli_overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
    """Task defaults <- YAML file <- CLI options (``None`` values on the CLI mean "not given")."""
    values = published_defaults(task, kind)
    chosen: dict[str, Any] = {}
    if config_file is not None:
        chosen.update(load_overrides(config_file))
    if cli_overrides:
        given = {k: v for k, v in cli_overrides.items() if v is not None}
        chosen.update(normalise_overrides(given, "the command line"))
    if "final_model" in chosen and "average_last" not in chosen:
        values.pop("average_last", None)  # asking for the last or best checkpoint replaces a task's default average
    values.update(chosen)
    return TrainingConfig(**values)
