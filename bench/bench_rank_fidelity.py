"""Rank fidelity: does a proxy order architectures as training them alone does?

    python bench/bench_rank_fidelity.py --task multi30k.de-en --data-dir DATA \
        --supernet hat=SUPER_DIR --supernet sandwich=SUPER_DIR2 \
        --trained NAME=SAVE_DIR [--trained NAME=SAVE_DIR ...] [--bleu NAME=TEST_JSON ...] --out OUT.json

Each ``--trained`` directory is what `hat train-sub --save-dir` wrote for one architecture: ``model/config.json``
(the architecture and the validation loss of the final model) and ``train_log.jsonl`` (the validation loss at
every validation). The same NAME may be given several times, once per seed (the same architecture): the truth is
then the mean of the seeds' final validation losses, whose seed noise has 1/k of one run's variance. That noise
bounds every proxy's tau: two seeds of one architecture order the Multi30k set with tau ~0.7-0.8. The proxies are

- ``inherited:LABEL``: the validation loss of the architecture's slice of each SuperTransformer, scored
  exactly as `hat search` scores candidates (same data, label smoothing, precision). ``LABEL=MODEL_DIR`` is the
  final model; ``LABEL=MODEL_DIR@CHECKPOINT_DIR`` scores a checkpoint's weights in the structure of a model of
  the same task and space (the first "@" separates the two paths);
- ``short:N``: the validation loss after the first N updates of the first seed's standalone run, which is what
  a re-ranking stage of N updates would see (same seed, same learning-rate schedule up to N).

Printed: one row per architecture and the Kendall tau (tau-b) of every proxy against the truth, the same over
the architectures that are not hand-scaled (so a proxy cannot score by the plain models alone), the agreement
of two seeds where there are two with an estimate of what a perfect proxy would reach against this truth (see
proxy_ceiling; ``short:N`` shares seed 1's noise with the truth and is not bounded by it), and the truth
against test BLEU where given. Every inherited proxy also gets the range its tau takes over resampled sets of
the same architectures (bootstrap, 90%), and ``--compare A B`` the same for the difference of two proxies: how
much a tau or a gain owes to which architectures are in the set (a SuperTransformer trained again adds noise of
its own, which this does not see). ``--proxies-from [PREFIX=]JSON`` takes the inherited scores of an earlier run's
``--out`` file, so tables of several GPU runs can be compared on any machine. Needs a GPU for the inherited
scores of a real task (bf16), or runs on the CPU (fp32) for the demo task.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path


def kendall_tau(x: list[float], y: list[float]) -> float:
    """Kendall's tau-b: +1 when both orders agree on every pair, -1 when every pair is reversed."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def pairs(values: list[str]) -> dict[str, str]:
    return {name: paths[-1] for name, paths in pairs_all(values).items()}


def pairs_all(values: list[str]) -> dict[str, list[str]]:
    """NAME=PATH arguments, every path of a repeated NAME kept in order."""
    out: dict[str, list[str]] = {}
    for value in values:
        name, _, path = value.partition("=")
        if not path:
            raise SystemExit(f"expected NAME=PATH, got {value!r}")
        out.setdefault(name, []).append(path)
    return out


def standalone_record(save_dir: Path) -> dict:
    config = json.loads((save_dir / "model" / "config.json").read_text())
    curve = {}
    log = save_dir / "train_log.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if row.get("valid_loss"):
                curve[int(row["updates"])] = float(row["valid_loss"]["arch"])  # a resumed run's later line wins
    return {"arch": config["arch"], "final": float(config["training"]["valid_loss"]["arch"]), "curve": curve}


def inherited_losses(supernet: str, archs: dict[str, dict], task_name: str, data_dir: Path, device: str | None) -> dict[str, float]:
    from hat_cli import resolve
    from hat_cli.core.devices import resolve_device
    from hat_cli.data.batching import load_split
    from hat_cli.model.directory import load_model
    from hat_cli.model.space import SubTransformerConfig
    from hat_cli.search import fitness
    from hat_cli.training.checkpoint import load_weights

    task = resolve.task(task_name)
    dev = resolve_device(device)
    model_dir, _, checkpoint = supernet.partition("@")
    model, _ = load_model(model_dir)
    if checkpoint:  # the final model gives the structure, the checkpoint the weights
        load_weights(checkpoint, model)
    data = load_split(data_dir, "valid", task.src, task.tgt)
    valid = fitness.prepare_validation(data, fitness.default_max_tokens(dev), dev)
    score = fitness.ValidationLoss(model, valid, fitness.default_precision(dev))
    names = list(archs)
    losses = score([SubTransformerConfig.from_dict(archs[n]["arch"]) for n in names])
    return dict(zip(names, losses))


def proxy_ceiling(seed_tau: float, seeds_per_arch: list[int]) -> float:
    """The tau a perfect proxy (each architecture's expected loss) would reach against a truth that averages
    ``seeds_per_arch[i]`` seeds of architecture i, under a Gaussian model: tau = (2/pi) asin(rho) for a
    correlation rho; two single seeds correlate with the reliability r = sin(pi/2 * seed_tau), so seed noise has
    (1 - r) / r of the architectures' true variance, and a mean of k seeds 1/k of that (pooled over the set as
    the mean of 1/k); the expected loss correlates with the truth by the square root of its reliability.
    A rough estimate: the seed agreement of ten architectures is itself uncertain by about +-0.2."""
    r = math.sin(math.pi / 2 * max(seed_tau, 0.0))
    if r <= 0.0:
        return 0.0
    noise = (1.0 - r) / r * sum(1.0 / k for k in seeds_per_arch) / len(seeds_per_arch)
    return 2 / math.pi * math.asin(math.sqrt(1.0 / (1.0 + noise)))


def bootstrap_taus(proxies: dict[str, list[float]], truth: list[float], resamples: int = 2000,
                   seed: int = 0) -> list[dict[str, float]]:
    """Kendall tau of every proxy against the truth over ``resamples`` resamplings of the architectures (drawn
    with replacement; the same draws for every proxy, so that two proxies can be compared pair by pair). How much
    a tau owes to which architectures happen to be in the set; not the noise of training the proxy again."""
    import random

    rng = random.Random(seed)
    n = len(truth)
    draws = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        draws.append({label: kendall_tau([values[i] for i in idx], [truth[i] for i in idx])
                      for label, values in proxies.items()})
    return [d for d in draws if all(v == v for v in d.values())]  # drop draws of one repeated architecture


def interval(values: list[float], level: float = 0.9) -> tuple[float, float]:
    """The central ``level`` share of ``values`` (percentiles)."""
    ordered = sorted(values)
    low = ordered[round((1 - level) / 2 * (len(ordered) - 1))]
    high = ordered[round((1 + level) / 2 * (len(ordered) - 1))]
    return low, high


def prefixed_path(given: str) -> tuple[str, Path]:
    """``[PREFIX=]JSON`` split at the first "=": a prefix is a bare label, so where the part before it holds a path
    separator, or the whole argument is a file, the argument is a path with an "=" of its own."""
    prefix, separator, path = given.partition("=")
    if not separator or os.sep in prefix or "/" in prefix or Path(given).is_file():
        return "", Path(given)
    return prefix, Path(path)


def proxies_from(path: Path, names: list[str], prefix: str = "") -> dict[str, dict[str, float]]:
    """The ``inherited:*`` columns an earlier run of this script wrote (its --out JSON), for these architectures;
    with a prefix, ``inherited:LABEL`` becomes ``inherited:PREFIX.LABEL`` (two runs that used the same labels)."""
    archs = json.loads(path.read_text())["architectures"]
    missing = [n for n in names if n not in archs]
    if missing:
        raise SystemExit(f"{path} has no scores for {', '.join(missing)}")
    labels = sorted({k for n in names for k in archs[n] if k.startswith("inherited:")})
    renamed = {label: f"inherited:{prefix}.{label.removeprefix('inherited:')}" if prefix else label for label in labels}
    return {renamed[label]: {n: float(archs[n][label]) for n in names} for label in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", type=Path, help="the task's data (needed to score --supernet)")
    parser.add_argument("--supernet", action="append", default=[], help="LABEL=MODEL_DIR of a SuperTransformer")
    parser.add_argument("--trained", action="append", default=[], help="NAME=SAVE_DIR of `hat train-sub`")
    parser.add_argument("--bleu", action="append", default=[], help="NAME=JSON of `hat test --json`")
    parser.add_argument("--proxies-from", action="append", default=[],
                        help="[PREFIX=]JSON, an earlier --out file: its inherited:* scores join the table (no GPU "
                             "needed); PREFIX renames inherited:LABEL to inherited:PREFIX.LABEL")
    parser.add_argument("--compare", nargs=2, metavar=("PROXY_A", "PROXY_B"),
                        help="bootstrap the tau difference of two proxies (e.g. inherited:a inherited:b)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    records = {}
    for name, paths in pairs_all(args.trained).items():
        runs = []
        for path in paths:
            try:
                runs.append(standalone_record(Path(path)))
            except (OSError, KeyError, ValueError) as exc:
                print(f"skipping {name}'s {path}: {exc}")
        if not runs:
            continue
        if any(run["arch"] != runs[0]["arch"] for run in runs):
            raise SystemExit(f"the runs given as {name} are not all of one architecture")
        records[name] = {**runs[0], "final": sum(r["final"] for r in runs) / len(runs), "seed_finals": [r["final"] for r in runs]}
    names = sorted(records)
    truth = [records[n]["final"] for n in names]
    proxies: dict[str, dict[str, float]] = {}
    for given in args.proxies_from:
        prefix, path = prefixed_path(given)
        proxies.update(proxies_from(path, names, prefix))
    if args.supernet and args.data_dir is None:
        raise SystemExit("--supernet needs --data-dir")
    for label, path in pairs(args.supernet).items():
        proxies[f"inherited:{label}"] = inherited_losses(path, {n: records[n] for n in names}, args.task, args.data_dir, args.device)
    common_updates = set.intersection(*(set(records[n]["curve"]) for n in names)) if names else set()
    final_update = max(common_updates) if common_updates else None
    for updates in sorted(common_updates):
        if updates != final_update:
            proxies[f"short:{updates}"] = {n: records[n]["curve"][updates] for n in names}
    bleu = {}
    for name, path in pairs(args.bleu).items():
        try:
            bleu[name] = float(json.loads(Path(path).read_text())["bleu"])
        except (OSError, KeyError, ValueError):
            pass

    taus = {label: kendall_tau([values[n] for n in names], truth) for label, values in proxies.items()}
    from hat_cli.model.space import SubTransformerConfig

    heterogeneous = [n for n in names if not SubTransformerConfig.from_dict(records[n]["arch"]).is_hand_scaled()]
    taus_heterogeneous = {label: kendall_tau([values[n] for n in heterogeneous], [records[n]["final"] for n in heterogeneous])
                          for label, values in proxies.items() if len(heterogeneous) > 2}
    two_seeds = [n for n in names if len(records[n]["seed_finals"]) >= 2]
    if len(two_seeds) > 2:  # how well the truth agrees with itself: the ceiling any proxy is measured against
        taus["seed1_vs_seed2"] = kendall_tau([records[n]["seed_finals"][0] for n in two_seeds],
                                              [records[n]["seed_finals"][1] for n in two_seeds])
    ceiling = proxy_ceiling(taus["seed1_vs_seed2"], [len(records[n]["seed_finals"]) for n in names]) if "seed1_vs_seed2" in taus else None
    with_bleu = [n for n in names if n in bleu]
    if len(with_bleu) > 2:  # lower loss should mean higher BLEU: tau of loss against -BLEU
        taus["truth_vs_test_bleu"] = kendall_tau([records[n]["final"] for n in with_bleu], [-bleu[n] for n in with_bleu])
    inherited = {label: [values[n] for n in names] for label, values in proxies.items() if label.startswith("inherited:")}
    draws = bootstrap_taus(inherited, truth) if inherited and len(names) > 3 else []
    intervals = {label: interval([d[label] for d in draws]) for label in inherited} if draws else {}
    comparison = None
    if args.compare:
        a, b = args.compare
        if a not in inherited or b not in inherited:
            raise SystemExit(f"--compare takes two inherited proxies of this table: {', '.join(inherited)}")
        differences = [d[a] - d[b] for d in draws]
        comparison = {"a": a, "b": b, "difference": taus[a] - taus[b], "interval_90": interval(differences),
                      "share_a_better": sum(x > 0 for x in differences) / len(differences)}
    doc = {"architectures": {n: {**records[n], **{k: v[n] for k, v in proxies.items()}, "bleu": bleu.get(n),
                                 "hand_scaled": n not in heterogeneous} for n in names},
           "kendall_tau": taus, "kendall_tau_not_hand_scaled": taus_heterogeneous, "count": len(names),
           "count_not_hand_scaled": len(heterogeneous), "count_two_seeds": len(two_seeds),
           "perfect_proxy_tau_estimate": ceiling, "bootstrap_interval_90": intervals, "comparison": comparison}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")

    columns = list(proxies)
    print("| architecture | standalone valid loss | " + " | ".join(columns) + " | BLEU |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for n in sorted(names, key=lambda k: records[k]["final"]):
        cells = " | ".join(f"{proxies[c][n]:.3f}" for c in columns)
        print(f"| {n} | {records[n]['final']:.3f} | {cells} | {bleu.get(n, float('nan')):.2f} |")
    print(f"\nKendall tau against the standalone valid loss ({len(names)} architectures, "
          f"{len(heterogeneous)} not hand-scaled, {len(two_seeds)} with two seeds):")
    for label, tau in taus.items():
        other = taus_heterogeneous.get(label)
        band = f"   90% of resampled sets: {intervals[label][0]:+.2f} to {intervals[label][1]:+.2f}" if label in intervals else ""
        print(f"  {label}: {tau:+.3f}" + (f"   (not hand-scaled: {other:+.3f})" if other is not None else "") + band)
    if ceiling is not None:
        print(f"  a perfect proxy against this truth: roughly {ceiling:+.2f} (from the seed agreement of "
              f"{len(two_seeds)} architectures; short:N shares seed 1's noise and is not bounded by it)")
    if comparison:
        low, high = comparison["interval_90"]
        print(f"  {comparison['a']} - {comparison['b']}: {comparison['difference']:+.3f}, 90% of resampled sets "
              f"{low:+.2f} to {high:+.2f}, {comparison['a']} ahead in {100 * comparison['share_a_better']:.0f}% "
              "(architectures resampled; a SuperTransformer trained again would add its own noise)")


if __name__ == "__main__":
    main()
