"""Latency datasets: HAT's CSV (docs/METHOD.md §4.4) extended with per-layer columns and measurement metadata.

The first 14 columns are exactly HAT's, so HAT's own tools read our files; then the per-layer
architecture (so predictors can use more than averages), then where/how each row was measured.

Collection is append-only and resumable: sample i is drawn from ``Random("hat-latency:{seed}:{i}")``,
so a resumed run continues the same sequence; every row is flushed and fsynced as soon as it is
measured, and a torn last line (the process died mid-write) is cut off on resume. A fixed reference
architecture is re-measured every K samples (rows with ``reference=1``) to expose drift.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from hat_cli.core.errors import HatError
from hat_cli.core.files import atomic_write_text, make_parent, naming
from hat_cli.core.locks import exclusive
from hat_cli.model.space import DECODER_LIST_FIELDS, ENCODER_LIST_FIELDS, FEATURE_NAMES, SearchSpace, SubTransformerConfig

LATENCY_COLUMNS = ("latency_mean_encoder", "latency_mean_decoder", "latency_std_encoder", "latency_std_decoder")
HAT_COLUMNS: tuple[str, ...] = FEATURE_NAMES + LATENCY_COLUMNS  # docs/METHOD.md §4.4, exact names and order
METADATA_COLUMNS = (
    "hardware",
    "device",
    "precision",
    "mode",
    "threads",
    "repetitions",
    "instances",
    "torch_version",
    "timestamp",
    "task",
    "seed",
    "sample_index",
    "reference",
)
REFERENCE_SEED = "hat-latency-reference"


def layer_columns(encoder_layers: int, decoder_layers: int) -> tuple[str, ...]:
    cols = [f"{f}_{i}" for f in ENCODER_LIST_FIELDS for i in range(encoder_layers)]
    cols += [f"{f}_{i}" for f in DECODER_LIST_FIELDS for i in range(decoder_layers)]
    return tuple(cols)


def header_for(space: SearchSpace) -> tuple[str, ...]:
    return HAT_COLUMNS + layer_columns(space.shape.encoder_layers, space.shape.decoder_layers) + METADATA_COLUMNS


def sample_config(space: SearchSpace, seed: int, index: int) -> SubTransformerConfig:
    """Sample ``index`` of the sequence for ``seed``: independent of how many samples came before."""
    return space.sample(random.Random(f"hat-latency:{seed}:{index}"))


def reference_config(space: SearchSpace) -> SubTransformerConfig:
    """The fixed architecture re-measured to detect drift (the same for every run in this space)."""
    return space.sample(random.Random(REFERENCE_SEED))


def config_columns(config: SubTransformerConfig, space: SearchSpace) -> dict[str, object]:
    row: dict[str, object] = dict(zip(FEATURE_NAMES, config.features()))
    for fields, layers in ((ENCODER_LIST_FIELDS, space.shape.encoder_layers), (DECODER_LIST_FIELDS, space.shape.decoder_layers)):
        for f in fields:
            values = getattr(config, f)
            for i in range(layers):
                row[f"{f}_{i}"] = values[i] if i < len(values) else ""
    return row


MAX_LAYERS = 64  # a layer count beyond this in a CSV is damage, not an architecture


def _whole(row: dict[str, str], name: str, low: int = 1, high: int = 1 << 20) -> int:
    """A column holding a whole number (written as 6 or 6.0) within [low, high]; ValueError otherwise."""
    value = float(row[name])
    if not math.isfinite(value) or value != int(value) or not low <= value <= high:
        raise ValueError(f"column {name} is {row[name]}, not a whole number from {low} to {high}")
    return int(value)


def config_from_row(row: dict[str, str]) -> Optional[SubTransformerConfig]:
    """The architecture of a row with per-layer columns (None for HAT's averaged-only rows); a ValueError
    (or KeyError) names what is wrong with a damaged row."""
    if "encoder_ffn_embed_dim_0" not in row:
        return None
    enc_layers, dec_layers = _whole(row, "encoder_layer_num", 1, MAX_LAYERS), _whole(row, "decoder_layer_num", 1, MAX_LAYERS)
    values = {}
    for fields, layers in ((ENCODER_LIST_FIELDS, enc_layers), (DECODER_LIST_FIELDS, dec_layers)):
        for f in fields:
            low = -1 if f == "decoder_arbitrary_ende_attn" else 1
            values[f] = tuple(_whole(row, f"{f}_{i}", low) for i in range(layers))
    return SubTransformerConfig(
        encoder_embed_dim=_whole(row, "encoder_embed_dim"),
        decoder_embed_dim=_whole(row, "decoder_embed_dim"),
        encoder_layer_num=enc_layers,
        decoder_layer_num=dec_layers,
        **values,
    )


def total_ms(row: dict[str, str]) -> float:
    """A row's measured latency: encoder plus decoder, in ms."""
    return float(row["latency_mean_encoder"]) + float(row["latency_mean_decoder"])


def _format(value: object) -> str:
    # HAT writes floats with Python's str(); ints stay ints.
    return str(value)


# ======================================================================================= reading
@dataclass
class LatencyTable:
    """A latency CSV in memory: the header and every complete row (as strings)."""

    path: Path
    header: tuple[str, ...]
    rows: list[dict[str, str]]

    @property
    def has_layers(self) -> bool:
        return "encoder_ffn_embed_dim_0" in self.header

    def samples(self) -> list[dict[str, str]]:
        """Rows of sampled architectures (reference re-measurements left out)."""
        return [r for r in self.rows if r.get("reference", "0") in ("0", "")]

    def references(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r.get("reference", "0") == "1"]

    def reference_record(self) -> Optional[dict]:
        """The drift reference of the collection: its architecture, median total latency and relative spread
        (std / mean). The search's safety margin and `hat search --verify` use it; None with fewer than two."""
        rows = self.references()
        totals = [total_ms(r) for r in rows]
        if len(totals) < 2:
            return None
        config = config_from_row(rows[0])
        return {"median_ms": statistics.median(totals), "spread": statistics.pstdev(totals) / statistics.fmean(totals),
                "min_ms": min(totals), "max_ms": max(totals), "count": len(totals),
                "arch": config.to_dict() if config is not None else None}


def read_latency_csv(path: str | Path) -> LatencyTable:
    """Read a HAT or hat latency CSV; a HatError names the first problem (header, row, value)."""
    path = Path(path)
    if path.is_dir():
        raise HatError(f"Latency dataset {path} is a directory; give the CSV file.")
    if not path.is_file():
        raise HatError(f"Latency dataset {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise HatError(f"Latency dataset {path} is not a UTF-8 text file.") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line is not a row
    reader = csv.reader(io.StringIO(text))
    try:
        header = tuple(next(reader))
    except StopIteration:
        raise HatError(f"Latency dataset {path} is empty.") from None
    except csv.Error as exc:
        raise HatError(f"{path} is not a latency dataset: its header is not CSV ({exc}).") from None
    if header[: len(HAT_COLUMNS)] != HAT_COLUMNS:
        raise HatError(
            f"{path} is not a latency dataset: its first {len(HAT_COLUMNS)} columns must be HAT's "
            f"({', '.join(HAT_COLUMNS[:3])}, ..., {HAT_COLUMNS[-1]})."
        )
    rows = []
    line_number = 1
    try:
        for line_number, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise HatError(f"{path} line {line_number} has {len(values)} fields, the header has {len(header)}.")
            row = dict(zip(header, values))
            _check_numbers(row, path, line_number)
            rows.append(row)
    except csv.Error as exc:
        raise HatError(f"{path} line {line_number + 1} is not a CSV row ({exc}).") from None
    if not rows:
        raise HatError(f"Latency dataset {path} has a header but no rows.")
    return LatencyTable(path, header, rows)


def _check_numbers(row: dict[str, str], path: Path, line_number: int) -> None:
    """HAT's columns are finite numbers, latencies are not negative: a NaN here would silently poison a
    predictor fitted on the file."""
    for name in HAT_COLUMNS:
        try:
            value = float(row[name])
        except ValueError:
            raise HatError(f"{path} line {line_number}: column {name} is '{row[name]}', not a number.") from None
        if not math.isfinite(value):
            raise HatError(f"{path} line {line_number}: column {name} is {row[name]}, not a finite number.")
        if name in LATENCY_COLUMNS and value < 0:
            raise HatError(f"{path} line {line_number}: column {name} is {row[name]}; a latency cannot be negative.")


# ======================================================================================= writing
class LatencyCsvWriter:
    """Appends rows durably: each row is written whole, flushed and fsynced before the next measurement."""

    def __init__(self, path: Path, header: tuple[str, ...]):
        self.path = path
        self.header = header
        self._handle = open(path, "a", encoding="utf-8", newline="")

    def write(self, row: dict[str, object]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([_format(row.get(c, "")) for c in self.header])
        try:
            self._handle.write(buffer.getvalue())
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:  # a full disk: name the CSV (a torn last line is cut on resume)
            raise naming(exc, self.path) from None

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError:  # the write that failed already said why
            pass


def open_for_append(path: Path, header: tuple[str, ...], identity: dict[str, str]) -> tuple[LatencyCsvWriter, list[dict[str, str]]]:
    """Open ``path`` to continue collecting: create it with ``header``, or check that an existing file has
    this header and was collected with the same ``identity`` columns (hardware, task, seed, ...), cut a
    torn last line, and return the writer plus the rows already there."""
    make_parent(path)
    if not path.exists() or path.stat().st_size == 0:
        atomic_write_text(path, ",".join(header) + "\n")
        return LatencyCsvWriter(path, header), []
    with open(path, "rb") as handle:
        data = handle.read()
    # The header is checked before anything is changed: a file that is not our dataset stays untouched.
    first = data.split(b"\n", 1)[0]
    try:
        table_header = tuple(next(csv.reader(io.StringIO(first.decode("utf-8")))))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        raise HatError(f"{path} exists and is not a latency dataset; choose another --csv.") from None
    if table_header == tuple(c for c in header if c != "instances"):
        raise HatError(
            f"{path} was collected by an earlier hat, before latency CSVs recorded placements per measurement "
            f"(the 'instances' column); choose another --csv to start a new dataset (fit-predictor still reads this one)."
        )
    if table_header != header:
        raise HatError(
            f"{path} already exists with different columns (made by another version, space or tool); "
            f"choose another --csv to start a new dataset."
        )
    if b"\n" not in data:
        raise HatError(f"{path} has no complete header line; delete it or choose another --csv.")
    if not data.endswith(b"\n"):
        # The process died in the middle of a row: drop the partial line so it is measured again.
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())
    try:
        existing = read_latency_csv(path).rows
    except HatError as exc:
        if "no rows" not in str(exc):
            raise
        existing = []
    for row in existing[:1]:
        for key, expected in identity.items():
            if row.get(key) != expected:
                raise HatError(
                    f"{path} was collected with {key}={row.get(key)}, this run has {key}={expected}; "
                    f"use the same settings to resume or choose another --csv."
                )
    return LatencyCsvWriter(path, header), existing


# ======================================================================================= collecting
@dataclass
class CollectionResult:
    csv: Path
    rows: int  # sampled-architecture rows in the file
    new_rows: int  # rows (samples + references) written by this run
    references: list[float] = field(default_factory=list)  # total latency of every reference row, in order

    def drift(self) -> dict[str, float] | None:
        if len(self.references) < 2:
            return None
        first, spread = self.references[0], max(self.references) - min(self.references)
        return {
            "reference_first_ms": first,
            "reference_last_ms": self.references[-1],
            "reference_spread_pct": 100.0 * spread / statistics.fmean(self.references),
            "reference_count": len(self.references),
        }


def collect(
    path: Path,
    space: SearchSpace,
    measure: Callable[[SubTransformerConfig], "object"],
    samples: int,
    seed: int,
    metadata: dict[str, str],
    reference_every: int = 0,
    on_progress: Optional[Callable[[int, int, Optional[float]], None]] = None,
) -> CollectionResult:
    """Measure samples until ``path`` holds ``samples`` architectures (resuming where it stopped).

    ``measure(config)`` returns an object with encoder_ms, decoder_ms, encoder_std_ms, decoder_std_ms.
    ``metadata`` holds the METADATA_COLUMNS except timestamp / sample_index / reference.
    """
    if samples < 0:
        raise HatError(f"--samples must be at least 0, got {samples}.")
    if reference_every < 0:
        raise HatError(f"--reference-every must be 0 (off) or positive, got {reference_every}.")
    with exclusive(path, "latency measurements", "wait for it to finish (then run again to continue) or choose another --csv"):
        return _collect(path, space, measure, samples, seed, metadata, reference_every, on_progress)


def _collect(path, space, measure, samples, seed, metadata, reference_every, on_progress) -> CollectionResult:
    header = header_for(space)
    identity = {k: str(metadata[k]) for k in ("hardware", "task", "seed", "mode", "precision", "instances")}
    writer, existing = open_for_append(path, header, identity)
    try:
        done = {int(r["sample_index"]) for r in existing if r["reference"] == "0"}
        referenced = {int(r["sample_index"]) for r in existing if r["reference"] == "1"}
    except ValueError:
        writer.close()
        raise HatError(f"{path} has a sample_index that is not a whole number; it was not written by hat collect-latency.") from None
    references = [total_ms(r) for r in existing if r["reference"] == "1"]
    reference = reference_config(space)
    new_rows = 0

    def write(config: SubTransformerConfig, index: int, is_reference: bool):
        nonlocal new_rows
        result = measure(config)
        row = config_columns(config, space)
        row.update(
            latency_mean_encoder=result.encoder_ms,
            latency_mean_decoder=result.decoder_ms,
            latency_std_encoder=result.encoder_std_ms,
            latency_std_decoder=result.decoder_std_ms,
        )
        row.update(metadata)
        row.update(timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), sample_index=index, reference=int(is_reference))
        writer.write(row)
        new_rows += 1
        return result.encoder_ms + result.decoder_ms

    try:
        for index in range(samples):
            if index in done:
                continue
            if reference_every and index % reference_every == 0 and index not in referenced:
                references.append(write(reference, index, True))
                referenced.add(index)
            total = write(sample_config(space, seed, index), index, False)
            done.add(index)
            if on_progress:
                on_progress(len(done), samples, total)
    finally:
        writer.close()
    return CollectionResult(path, len(done), new_rows, references)
