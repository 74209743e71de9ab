"""Search spaces and SubTransformer architectures in HAT's own file formats.

A *search space* is HAT's SuperTransformer YAML (docs/METHOD.md §1.2): the allocated ("super") shape plus
the choice list of every knob. A *SubTransformerConfig* is one architecture in that space, read from and
written to HAT's 10-key YAML (docs/METHOD.md §1.3) byte for byte as the published files are laid out.
No torch here: resolving `--arch` and `--task` must stay cheap.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text
from hat_cli.core.paths import CONFIG_DIR

# The 10 keys of a SubTransformer YAML, in the order HAT writes them, grouped by blank lines.
YAML_KEY_GROUPS: tuple[tuple[str, ...], ...] = (
    ("encoder-embed-dim-subtransformer", "decoder-embed-dim-subtransformer"),
    ("encoder-ffn-embed-dim-all-subtransformer", "decoder-ffn-embed-dim-all-subtransformer"),
    ("encoder-layer-num-subtransformer", "decoder-layer-num-subtransformer"),
    (
        "encoder-self-attention-heads-all-subtransformer",
        "decoder-self-attention-heads-all-subtransformer",
        "decoder-ende-attention-heads-all-subtransformer",
    ),
    ("decoder-arbitrary-ende-attn-all-subtransformer",),
)
YAML_KEYS: tuple[str, ...] = tuple(k for group in YAML_KEY_GROUPS for k in group)

# The two comment lines every published architecture file carries before its last key.
_ARBITRARY_COMMENT = (
    "# for arbitrary encoder decoder attention. -1 means attending to last one encoder layer\n"
    "# 1 means last two encoder layers, 2 means last three encoder layers\n"
)

# YAML key -> attribute of SubTransformerConfig.
_KEY_TO_FIELD = {
    "encoder-embed-dim-subtransformer": "encoder_embed_dim",
    "decoder-embed-dim-subtransformer": "decoder_embed_dim",
    "encoder-ffn-embed-dim-all-subtransformer": "encoder_ffn_embed_dim",
    "decoder-ffn-embed-dim-all-subtransformer": "decoder_ffn_embed_dim",
    "encoder-layer-num-subtransformer": "encoder_layer_num",
    "decoder-layer-num-subtransformer": "decoder_layer_num",
    "encoder-self-attention-heads-all-subtransformer": "encoder_self_attention_heads",
    "decoder-self-attention-heads-all-subtransformer": "decoder_self_attention_heads",
    "decoder-ende-attention-heads-all-subtransformer": "decoder_ende_attention_heads",
    "decoder-arbitrary-ende-attn-all-subtransformer": "decoder_arbitrary_ende_attn",
}
ENCODER_LIST_FIELDS = ("encoder_ffn_embed_dim", "encoder_self_attention_heads")
DECODER_LIST_FIELDS = (
    "decoder_ffn_embed_dim",
    "decoder_self_attention_heads",
    "decoder_ende_attention_heads",
    "decoder_arbitrary_ende_attn",
)

# HAT's 10 latency features (docs/METHOD.md §1.6), in CSV order.
FEATURE_NAMES: tuple[str, ...] = (
    "encoder_embed_dim",
    "encoder_layer_num",
    "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg",
    "decoder_embed_dim",
    "decoder_layer_num",
    "decoder_ffn_embed_dim_avg",
    "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg",
    "decoder_arbitrary_ende_attn_avg",
)


def _load_yaml_text(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HatError(f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from None


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise HatError(f"Architecture file {path} does not exist.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HatError(f"{path} is not a UTF-8 text file.") from None


MAX_SIZE = 1 << 15  # far beyond any HAT dimension: a larger one is a typo, not a model


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SuperShape:
    """The allocated size of a SuperTransformer (every weight is this big)."""

    encoder_embed_dim: int = 640
    decoder_embed_dim: int = 640
    encoder_ffn_embed_dim: int = 3072
    decoder_ffn_embed_dim: int = 3072
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    qkv_dim: int = 512

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


_SHAPE_KEYS = {f.name.replace("_", "-"): f.name for f in dataclasses.fields(SuperShape)}
_CHOICE_KEYS = {
    "encoder-embed-choice": "encoder_embed_dim",
    "decoder-embed-choice": "decoder_embed_dim",
    "encoder-ffn-embed-dim-choice": "encoder_ffn_embed_dim",
    "decoder-ffn-embed-dim-choice": "decoder_ffn_embed_dim",
    "encoder-layer-num-choice": "encoder_layer_num",
    "decoder-layer-num-choice": "decoder_layer_num",
    "encoder-self-attention-heads-choice": "encoder_self_attention_heads",
    "decoder-self-attention-heads-choice": "decoder_self_attention_heads",
    "decoder-ende-attention-heads-choice": "decoder_ende_attention_heads",
    "decoder-arbitrary-ende-attn-choice": "decoder_arbitrary_ende_attn",
}


@dataclass(frozen=True)
class SearchSpace:
    """A SuperTransformer shape and the choices of every knob (keys are SubTransformerConfig fields)."""

    name: str
    shape: SuperShape
    choices: Mapping[str, tuple[int, ...]]
    share_all_embeddings: bool = True

    @classmethod
    def from_yaml(cls, path: str | Path, name: str | None = None) -> "SearchSpace":
        path = Path(path)
        data = _load_yaml_text(_read_text(path), str(path))
        if not isinstance(data, dict):
            raise HatError(f"{path} must be a YAML mapping of HAT SuperTransformer options.")
        shape_kwargs = {}
        for key, field in _SHAPE_KEYS.items():
            if key in data:
                if not _is_whole(data[key]) or not 1 <= data[key] <= MAX_SIZE:
                    raise HatError(f"Search space {path}: '{key}' must be a whole number from 1 to {MAX_SIZE}, got {data[key]!r}.")
                shape_kwargs[field] = data[key]
        choices = {}
        for key, field in _CHOICE_KEYS.items():
            if key not in data:
                raise HatError(f"Search space {path} lacks the key '{key}'.")
            value = data[key]
            value = value if isinstance(value, list) else [value]
            if not value or not all(_is_whole(v) for v in value):
                raise HatError(f"Search space {path}: '{key}' must be a whole number or a non-empty list of them, got {data[key]!r}.")
            choices[field] = tuple(value)
        for field in ("encoder_embed_dim", "decoder_embed_dim", "encoder_ffn_embed_dim", "decoder_ffn_embed_dim",
                      "encoder_layer_num", "decoder_layer_num"):
            if min(choices[field]) < 1:
                raise HatError(f"Search space {path}: every {field} choice must be at least 1, got {min(choices[field])}.")
        space = cls(
            name=name or path.stem,
            shape=SuperShape(**shape_kwargs),
            choices=choices,
            share_all_embeddings=bool(data.get("share-all-embeddings", False)),
        )
        space.check()
        return space

    @classmethod
    def builtin(cls, name: str) -> "SearchSpace":
        path = CONFIG_DIR / f"{name}.yml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yml")))
            raise HatError(f"Unknown search space '{name}'; built-in spaces are: {known}.")
        return cls.from_yaml(path, name)

    def check(self) -> None:
        """The choices must fit inside the allocated shape."""
        s, c = self.shape, self.choices
        limits = {
            "encoder_embed_dim": s.encoder_embed_dim,
            "decoder_embed_dim": s.decoder_embed_dim,
            "encoder_ffn_embed_dim": s.encoder_ffn_embed_dim,
            "decoder_ffn_embed_dim": s.decoder_ffn_embed_dim,
            "encoder_layer_num": s.encoder_layers,
            "decoder_layer_num": s.decoder_layers,
        }
        for field, limit in limits.items():
            if max(c[field]) > limit:
                raise HatError(f"Search space '{self.name}': choice {max(c[field])} of {field} exceeds the super size {limit}.")
        for field in ("encoder_self_attention_heads", "decoder_self_attention_heads", "decoder_ende_attention_heads"):
            for heads in c[field]:
                if heads <= 0 or s.qkv_dim % heads:
                    raise HatError(f"Search space '{self.name}': {heads} heads do not divide qkv-dim {s.qkv_dim}.")
        if not set(c["decoder_arbitrary_ende_attn"]) <= {-1, 1, 2}:
            raise HatError(f"Search space '{self.name}': arbitrary encoder-decoder attention choices must be -1, 1 or 2.")

    # Convenience views used by sampling, search and the representative configs.
    def largest(self, arbitrary: int = 1) -> "SubTransformerConfig":
        return self._extreme(max, arbitrary)

    def smallest(self, arbitrary: int = 1) -> "SubTransformerConfig":
        return self._extreme(min, arbitrary)

    def _extreme(self, pick, arbitrary: int) -> "SubTransformerConfig":
        c = self.choices
        enc_layers, dec_layers = pick(c["encoder_layer_num"]), pick(c["decoder_layer_num"])
        return SubTransformerConfig(
            encoder_embed_dim=pick(c["encoder_embed_dim"]),
            decoder_embed_dim=pick(c["decoder_embed_dim"]),
            encoder_layer_num=enc_layers,
            decoder_layer_num=dec_layers,
            encoder_ffn_embed_dim=(pick(c["encoder_ffn_embed_dim"]),) * enc_layers,
            encoder_self_attention_heads=(pick(c["encoder_self_attention_heads"]),) * enc_layers,
            decoder_ffn_embed_dim=(pick(c["decoder_ffn_embed_dim"]),) * dec_layers,
            decoder_self_attention_heads=(pick(c["decoder_self_attention_heads"]),) * dec_layers,
            decoder_ende_attention_heads=(pick(c["decoder_ende_attention_heads"]),) * dec_layers,
            decoder_arbitrary_ende_attn=(arbitrary,) * dec_layers,
        )

    def hand_scaled(self) -> list["SubTransformerConfig"]:
        """The plain Transformers of the space, what a person scaling one down by hand would try: one width
        for encoder and decoder, the same FFN size and head count in every layer and attention, standard
        encoder-decoder attention (the last encoder layer). Largest first. Listed once per space, since the
        sandwich training asks at every update."""
        cached = self.__dict__.get("_hand_scaled")
        if cached is None:
            cached = self._list_hand_scaled()
            object.__setattr__(self, "_hand_scaled", cached)  # a cache, not a field: equality is unchanged
        return list(cached)

    def _list_hand_scaled(self) -> tuple["SubTransformerConfig", ...]:
        c = self.choices
        widths = sorted(set(c["encoder_embed_dim"]) & set(c["decoder_embed_dim"]), reverse=True)
        ffns = sorted(set(c["encoder_ffn_embed_dim"]) & set(c["decoder_ffn_embed_dim"]), reverse=True)
        heads = sorted(set(c["encoder_self_attention_heads"]) & set(c["decoder_self_attention_heads"])
                       & set(c["decoder_ende_attention_heads"]), reverse=True)
        if -1 not in c["decoder_arbitrary_ende_attn"]:
            return ()  # no architecture of the space attends the way a plain Transformer does (-1: the last layer)
        return tuple(
            SubTransformerConfig(
                encoder_embed_dim=width, decoder_embed_dim=width, encoder_layer_num=le, decoder_layer_num=ld,
                encoder_ffn_embed_dim=(ffn,) * le, encoder_self_attention_heads=(head,) * le,
                decoder_ffn_embed_dim=(ffn,) * ld, decoder_self_attention_heads=(head,) * ld,
                decoder_ende_attention_heads=(head,) * ld, decoder_arbitrary_ende_attn=(-1,) * ld,
            )
            for width in widths for le in sorted(c["encoder_layer_num"], reverse=True)
            for ld in sorted(c["decoder_layer_num"], reverse=True) for ffn in ffns for head in heads
        )

    def sample(self, rng: random.Random) -> "SubTransformerConfig":
        """Draw one architecture uniformly, in the exact call order of HAT's sampler (docs/METHOD.md §1.5).

        With ``rng = random.Random(n)`` this reproduces HAT's ``sample_configs(..., rand_seed=n)``.
        """
        c = self.choices
        enc_embed = rng.choice(c["encoder_embed_dim"])
        dec_embed = rng.choice(c["decoder_embed_dim"])
        enc_layers = rng.choice(c["encoder_layer_num"])
        dec_layers = rng.choice(c["decoder_layer_num"])
        enc_ffn, enc_heads = [], []
        for _ in range(enc_layers):
            enc_ffn.append(rng.choice(c["encoder_ffn_embed_dim"]))
            enc_heads.append(rng.choice(c["encoder_self_attention_heads"]))
        dec_ffn, dec_self, dec_ende = [], [], []
        for _ in range(dec_layers):
            dec_ffn.append(rng.choice(c["decoder_ffn_embed_dim"]))
            dec_self.append(rng.choice(c["decoder_self_attention_heads"]))
            dec_ende.append(rng.choice(c["decoder_ende_attention_heads"]))
        # HAT draws one arbitrary-attention value for every super decoder layer, used or not.
        arbitrary = [rng.choice(c["decoder_arbitrary_ende_attn"]) for _ in range(self.shape.decoder_layers)]
        return SubTransformerConfig(
            encoder_embed_dim=enc_embed,
            decoder_embed_dim=dec_embed,
            encoder_layer_num=enc_layers,
            decoder_layer_num=dec_layers,
            encoder_ffn_embed_dim=tuple(enc_ffn),
            encoder_self_attention_heads=tuple(enc_heads),
            decoder_ffn_embed_dim=tuple(dec_ffn),
            decoder_self_attention_heads=tuple(dec_self),
            decoder_ende_attention_heads=tuple(dec_ende),
            decoder_arbitrary_ende_attn=tuple(arbitrary[:dec_layers]),
        )


@dataclass(frozen=True)
class SubTransformerConfig:
    """One SubTransformer: per-layer lists hold exactly one entry per *used* layer."""

    encoder_embed_dim: int
    decoder_embed_dim: int
    encoder_layer_num: int
    decoder_layer_num: int
    encoder_ffn_embed_dim: tuple[int, ...]
    encoder_self_attention_heads: tuple[int, ...]
    decoder_ffn_embed_dim: tuple[int, ...]
    decoder_self_attention_heads: tuple[int, ...]
    decoder_ende_attention_heads: tuple[int, ...]
    decoder_arbitrary_ende_attn: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS:
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    # ----------------------------------------------------------------------------------- reading
    @classmethod
    def from_mapping(cls, data: Any, source: str = "the architecture") -> "SubTransformerConfig":
        """Build from HAT's 10 YAML keys; longer per-layer lists are cut to the layer count as HAT does."""
        if not isinstance(data, dict):
            raise HatError(f"{source} must be a YAML mapping with HAT's 10 SubTransformer keys.")
        missing = [k for k in YAML_KEYS if k not in data]
        if missing:
            raise HatError(f"{source} lacks the key '{missing[0]}' (a SubTransformer YAML needs all of: {', '.join(YAML_KEYS)}).")
        values: dict[str, Any] = {}
        for key in YAML_KEYS:
            field, value = _KEY_TO_FIELD[key], data[key]
            is_list = field in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS
            if is_list:
                if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                    raise HatError(f"{source}: '{key}' must be a list of integers, got {value!r}.")
            elif not isinstance(value, int) or isinstance(value, bool):
                raise HatError(f"{source}: '{key}' must be an integer, got {value!r}.")
            values[field] = value
        for fields, layers_field in ((ENCODER_LIST_FIELDS, "encoder_layer_num"), (DECODER_LIST_FIELDS, "decoder_layer_num")):
            layers = values[layers_field]
            if layers < 1:
                raise HatError(f"{source}: '{layers_field}' must be at least 1, got {layers}.")
            for field in fields:
                if len(values[field]) < layers:
                    raise HatError(f"{source}: '{field}' has {len(values[field])} entries but the model uses {layers} layers.")
                values[field] = tuple(values[field][:layers])
        return cls(**values)

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "the architecture") -> "SubTransformerConfig":
        return cls.from_mapping(_load_yaml_text(text, source), source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SubTransformerConfig":
        return cls.from_yaml_text(_read_text(path), str(path))

    @classmethod
    def from_nested(cls, nested: Mapping[str, Mapping[str, Any]]) -> "SubTransformerConfig":
        """From HAT's internal nested dict (docs/METHOD.md §1.3), as the original code passes architectures around."""
        enc, dec = nested["encoder"], nested["decoder"]
        el, dl = int(enc["encoder_layer_num"]), int(dec["decoder_layer_num"])
        return cls(
            encoder_embed_dim=int(enc["encoder_embed_dim"]),
            decoder_embed_dim=int(dec["decoder_embed_dim"]),
            encoder_layer_num=el,
            decoder_layer_num=dl,
            encoder_ffn_embed_dim=tuple(enc["encoder_ffn_embed_dim"][:el]),
            encoder_self_attention_heads=tuple(enc["encoder_self_attention_heads"][:el]),
            decoder_ffn_embed_dim=tuple(dec["decoder_ffn_embed_dim"][:dl]),
            decoder_self_attention_heads=tuple(dec["decoder_self_attention_heads"][:dl]),
            decoder_ende_attention_heads=tuple(dec["decoder_ende_attention_heads"][:dl]),
            decoder_arbitrary_ende_attn=tuple(dec["decoder_arbitrary_ende_attn"][:dl]),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SubTransformerConfig":
        """From :meth:`to_dict` output (our JSON form, field names with underscores)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

    # ----------------------------------------------------------------------------------- writing
    def to_yaml_mapping(self) -> dict[str, Any]:
        return {key: (list(v) if isinstance(v := getattr(self, _KEY_TO_FIELD[key]), tuple) else v) for key in YAML_KEYS}

    def to_yaml(self) -> str:
        """HAT's layout: groups separated by blank lines, lists as Python reprs, the two comment lines."""
        mapping = self.to_yaml_mapping()
        chunks = []
        for group in YAML_KEY_GROUPS:
            prefix = _ARBITRARY_COMMENT if group == YAML_KEY_GROUPS[-1] else ""
            chunks.append(prefix + "".join(f"{key}: {mapping[key]!r}\n" for key in group))
        return "\n".join(chunks)

    def save_yaml(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_yaml())

    def to_nested(self) -> dict[str, dict[str, Any]]:
        d = self.to_dict()
        return {
            "encoder": {k: d[k] for k in ("encoder_embed_dim", "encoder_layer_num") + ENCODER_LIST_FIELDS},
            "decoder": {k: d[k] for k in ("decoder_embed_dim", "decoder_layer_num") + DECODER_LIST_FIELDS},
        }

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in dataclasses.fields(self)}

    def to_hat_keys(self) -> dict[str, Any]:
        """The 10 HAT keys (CLI.md's ``arch`` JSON field)."""
        return self.to_yaml_mapping()

    # ----------------------------------------------------------------------------------- checking
    def validate(self, space: SearchSpace) -> "SubTransformerConfig":
        """Raise a HatError naming the first field whose value the space does not allow."""
        for field in ("encoder_embed_dim", "decoder_embed_dim", "encoder_layer_num", "decoder_layer_num"):
            self._check_value(space, field, getattr(self, field))
        for field in ENCODER_LIST_FIELDS + DECODER_LIST_FIELDS:
            for layer, value in enumerate(getattr(self, field)):
                self._check_value(space, field, value, layer)
        return self

    def _check_value(self, space: SearchSpace, field: str, value: int, layer: int | None = None) -> None:
        allowed = space.choices[field]
        if value not in allowed:
            where = f" (layer {layer})" if layer is not None else ""
            choices = ", ".join(str(v) for v in allowed)
            raise HatError(
                f"The architecture's {field}{where} is {value}, outside search space '{space.name}', which allows {choices}."
            )

    def fits(self, shape: SuperShape) -> bool:
        """Whether the weights of ``shape`` can hold this architecture (looser than a space's choices)."""
        return (
            self.encoder_embed_dim <= shape.encoder_embed_dim
            and self.decoder_embed_dim <= shape.decoder_embed_dim
            and self.encoder_layer_num <= shape.encoder_layers
            and self.decoder_layer_num <= shape.decoder_layers
            and max(self.encoder_ffn_embed_dim) <= shape.encoder_ffn_embed_dim
            and max(self.decoder_ffn_embed_dim) <= shape.decoder_ffn_embed_dim
            and all(shape.qkv_dim % h == 0 for h in self.encoder_self_attention_heads + self.decoder_self_attention_heads + self.decoder_ende_attention_heads)
        )

    def is_hand_scaled(self) -> bool:
        """A plain Transformer: one width, one FFN size and one head count throughout, standard encoder-decoder
        attention (see SearchSpace.hand_scaled)."""
        heads = self.encoder_self_attention_heads + self.decoder_self_attention_heads + self.decoder_ende_attention_heads
        return (self.encoder_embed_dim == self.decoder_embed_dim
                and len(set(self.encoder_ffn_embed_dim + self.decoder_ffn_embed_dim)) == 1
                and len(set(heads)) == 1 and set(self.decoder_arbitrary_ende_attn) == {-1})

    # ----------------------------------------------------------------------------------- features
    def features(self) -> list[float]:
        """HAT's 10 latency features (docs/METHOD.md §1.6): dims, layer counts and per-layer averages."""
        def mean(values: Iterable[float]) -> float:
            values = list(values)
            return sum(values) / len(values)

        return [
            self.encoder_embed_dim,
            self.encoder_layer_num,
            mean(self.encoder_ffn_embed_dim),
            mean(self.encoder_self_attention_heads),
            self.decoder_embed_dim,
            self.decoder_layer_num,
            mean(self.decoder_ffn_embed_dim),
            mean(self.decoder_self_attention_heads),
            mean(self.decoder_ende_attention_heads),
            mean(a + 1 if a > 0 else 1 for a in self.decoder_arbitrary_ende_attn),  # -1→1, 1→2, 2→3
        ]

    def encoder_layers_attended(self, layer: int) -> int:
        """How many of the last encoder layers decoder layer ``layer`` attends to (1, 2 or 3)."""
        a = self.decoder_arbitrary_ende_attn[layer]
        return 1 if a == -1 else a + 1

