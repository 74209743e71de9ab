"""`hat zoo`: the published models — list, info, pull, convert, push."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from hat_cli.cli.commands._options import JSON
from hat_cli.cli.console import console, emit_json, handle_errors, make_progress, warn
from hat_cli.core.errors import HatError

app = typer.Typer(no_args_is_help=True)


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value}{unit}"


@app.command("list")
@handle_errors
def list_models(
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task (wmt14.en-de, ... or the published wmt14ende)."),
    hw: Optional[str] = typer.Option(None, "--hw", help="Only models searched for this hardware (raspberrypi, xeon, titanxp)."),
    json_out: bool = JSON,
) -> None:
    """List the 44 published SubTransformers and 4 SuperTransformers with their published numbers."""
    # Lazily, here and in every command: the library loads when the command runs, not at start-up.
    from hat_cli import resolve
    from hat_cli.zoo import catalogue

    models = catalogue.models(task=resolve.task(task).name if task else None, hardware=hw)
    if json_out:
        emit_json([m.summary() for m in models])
        return
    table = Table(title=f"HAT model zoo ({len(models)} models)", show_lines=False)
    table.add_column("name", no_wrap=True)
    for column, justify in ( ("task", "left"), ("hardware", "left"), ("latency", "right"),
                            ("BLEU", "right"), ("Sacre", "right"), ("params", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for m in models:
        latency = m.labels.get("latency_label") or _fmt(m.latency_ms, "ms")
        params = f"{m.params / 1e6:.2f}M" if m.params else "-"
        table.add_row(m.name, m.task, m.hardware or "(super)", latency if m.latency_ms else "-", _fmt(m.bleu), _fmt(m.sacrebleu), params)
    console.print(table)


@app.command("info")
@handle_errors
def info(
    name: str = typer.Argument(..., help="A published name or an unambiguous prefix of one."),
    json_out: bool = JSON,
) -> None:
    """Everything the zoo knows about one model: numbers, architecture, original URL, Hub location."""
    # Lazily: start-up time (the library and torch load when the command runs).
    from hat_cli.zoo import catalogue, store

    entry = catalogue.resolve(name)
    doc = entry.to_dict()
    record = store.pulled_record(entry.name)
    doc["local"] = record
    if json_out:
        emit_json(doc)
        return
    console.print(f"[bold]{entry.name}[/] ({entry.kind}, {entry.task})")
    for key in ("hardware", "latency_ms", "bleu", "sacrebleu", "params", "flops", "search_space", "predictor", "same_architecture_as"):
        if doc.get(key) is not None:
            console.print(f"  {key}: {doc[key]}")
    if entry.arch_keys is not None:
        console.print("  architecture:")
        for line in entry.architecture().to_yaml().splitlines():
            if line and not line.startswith("#"):
                console.print(f"    {line}", highlight=False, soft_wrap=True)
    console.print(f"  original: {entry.original_url}", highlight=False, soft_wrap=True)
    state = "published, sha256 " + entry.hub.sha256 if entry.hub.published else "not published yet (pull falls back to the original)"
    console.print(f"  hub: {entry.hub.repo}/{entry.hub.filename} @ {entry.hub.revision} ({state})", highlight=False, soft_wrap=True)
    console.print(f"  local copy: {record['path'] if record else 'not pulled'}", highlight=False)


@app.command("pull")
@handle_errors
def pull(
    names: Optional[List[str]] = typer.Argument(None, help="Published names or unambiguous prefixes."),
    all_models: bool = typer.Option(False, "--all", help="Pull all 48 published models."),
    force: bool = typer.Option(False, "--force", help="Download again even if a local copy exists."),
    json_out: bool = JSON,
) -> None:
    """Download models as safetensors: from the Hub (HF_ENDPOINT, HF_HUB_OFFLINE and its cache apply),
    else from the authors' original checkpoint, converted on the fly. With one NAME --json prints one
    object {name, path, sha256}; with several or --all an array of them."""
    # Lazily: start-up time (the library and torch load when the command runs).
    from hat_cli.zoo import catalogue, predictors, store

    if all_models and names:
        raise HatError("Give model names or --all, not both.")
    if not all_models and not names:
        raise HatError("Name at least one model to pull (see `hat zoo list`), or use --all.")
    table = catalogue.load_zoo()
    predictor_names = [n for n in names or [] if n in table.predictors]
    entries = catalogue.models() if all_models else [catalogue.resolve(n) for n in names or [] if n not in table.predictors]
    results = []
    with make_progress() as progress:
        for name in predictor_names:  # the 8 shipped latency predictors pull by their exact names
            path, record = predictors.pull_predictor(name, force=force, progress=progress)
            results.append({"name": name, "path": str(path), "sha256": record.get("sha256"), "source": record.get("source")})
        for entry in entries:
            path, record = store.pull_with_record(entry.name, force=force, progress=progress)
            results.append({"name": entry.name, "path": str(path), "sha256": record.get("sha256"), "source": record.get("source")})
    for r in results:
        console.print(f"[green]pulled[/] {r['name']} -> {r['path']} ({r['source']})", highlight=False)
    if json_out:
        emit_json(results[0] if len(results) == 1 and not all_models else results)


@app.command("predictors")
@handle_errors
def predictors(json_out: bool = JSON) -> None:
    """List HAT's 8 shipped latency predictors (pull one with `hat zoo pull NAME`)."""
    # Lazily: start-up time (the library and torch load when the command runs).
    from hat_cli.zoo import catalogue

    rows = [p.to_dict() for p in catalogue.load_zoo().predictors.values()]
    if json_out:
        emit_json(rows)
        return
    table = Table(title="HAT latency predictors")
    for column in ("name", "task", "hardware", "lat_norm"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["task"], row["hardware"], str(row["lat_norm"]))
    console.print(table)


@app.command("convert")
@handle_errors
def convert(
    checkpoint: Path = typer.Argument(..., help="An original HAT checkpoint (.pt from the authors' links)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model directory to write (model.safetensors + config.json)."),
    arch: Optional[str] = typer.Option(
        None, "--arch", "-a",
        help="SubTransformer to extract (YAML file or zoo name). Default: the zoo entry named like the file, "
        "else the architecture recorded in the checkpoint's args, else the whole SuperTransformer.",
    ),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Task to record (default: from the zoo entry or the checkpoint's data path)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, float16, bfloat16, or original (the checkpoint's)."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir",
        help="Prepared data whose dictionaries (dict.<lang>.txt) the checkpoint was trained with: their digests are "
        "recorded, so `hat test` and `hat search` refuse data made with other ones."),
    json_out: bool = JSON,
) -> None:
    """Convert an original HAT checkpoint (read with a restricted unpickler: nothing in it is executed)."""
    # Lazily: start-up time (the library and torch load when the command runs).
    from hat_cli import resolve
    from hat_cli.zoo import catalogue
    from hat_cli.zoo import convert as conversion

    # A file named like a published model takes its architecture, task and shape from the zoo (when the
    # table can be read at all: a broken one must not stop a conversion that does not need it).
    try:
        entry = catalogue.load_zoo().models.get(checkpoint.stem)
    except HatError:
        entry = None
    config = resolve.architecture(arch) if arch else (entry.architecture() if entry and entry.is_subtransformer else None)
    if task:
        task = resolve.task(task).name
    extra = {"zoo_name": entry.name} if entry is not None and not arch else None
    source = "--arch" if arch else f"the zoo entry {entry.name}, which the file is named like" if entry else "given"
    with console.status(f"converting {checkpoint.name}"):
        result = conversion.convert_original(
            checkpoint,
            output,
            arch=config,
            task=task or (entry.task if entry else None),
            dtype=dtype,
            expected_shape=entry.super_shape if entry else None,
            extra_metadata=extra,
            arch_source=source,
            data_dir=data_dir,
        )
    if not result.get("dictionaries"):
        warn("no dictionaries recorded (pass --data-dir): `hat test` and `hat search` cannot tell data made with other "
             "dictionaries.")
    console.print(f"[green]wrote[/] {result['kind']} to {output}", highlight=False)
    if json_out:
        emit_json(result)


@app.command("push")
@handle_errors
def push(
    directory: Path = typer.Argument(..., help="A converted or trained model directory."),
    repo: str = typer.Option(..., "--repo", help="Hub repository id, e.g. hat-cli/HAT_wmt14ende_xeon-204.2ms_bleu-27.6."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    name: Optional[str] = typer.Option(None, "--name", help="The zoo model this is (for the model card; default: recorded in config.json)."),
    json_out: bool = JSON,
) -> None:
    """Publish a model directory with a generated model card (task, hardware, latency, BLEU) to the Hub."""
    # Lazily: start-up time (the library and torch load when the command runs).
    from hat_cli.zoo import card

    result = card.push(directory, repo, private=private, zoo_name=name)
    console.print(f"[green]pushed[/] {directory} to {result['repo']} at {result['commit']}", highlight=False)
    console.print(f'pin it in model_zoo.toml: revision = "{result["commit"]}", sha256 = "{result["sha256"]}"', highlight=False)
    if json_out:
        emit_json(result)
