"""Does faster training still train the same? Two code trees, the same Multi30k runs, side by side on one GPU.

Issue 16's check: `hat train-super` and `hat train-sub` with the Multi30k task defaults (seed 1), run by an
earlier code tree (`--old`, e.g. a `git archive` of main) and by this one (`--new`), all trainings at once
on one GPU (four, or more with `--super-repeats`; the tokens/s it prints are shared between them), then `hat test` of both SubTransformers. Passes when every validation loss agrees within 0.02 bits
and the test BLEU within 0.5. A SuperTransformer's inherited losses differ between GPU runs of one code and seed
(up to 0.25 bits on Multi30k, bench/RESULTS.md), so with `--super-repeats K` the means of each tree's K runs are
compared, and each row also says whether the difference is within two standard errors of the runs' own spread.

    python bench/bench_train_equivalence.py --old ../base --new . --raw DIR_WITH_MULTI30K_RAW --work DIR

Each tree runs as `python -c 'hat_cli.cli.entry.main()'` started *in* that tree (Python puts a `-c` command's
working directory first on its path, before PYTHONPATH), with a `hat_configs` link to its `configs/` in a
temporary folder on PYTHONPATH; every run records which `hat_cli` it imported, and the bench stops if a run
imported the wrong tree. (A first version started both from the caller's directory, so both sides ran the
caller's tree: the eighth session's first "old against new" numbers were new against new.) Exits 1 when a
measure is outside its tolerance.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASK = "multi30k.de-en"
LOSS_TOLERANCE_BITS = 0.02
BLEU_TOLERANCE = 0.5


def hat_command(tree: Path, links: Path, *args: str) -> tuple[list[str], dict]:
    """The `hat` command of one code tree (run with the tree as working directory), and its environment."""
    configs = links / hashlib.sha1(str(tree).encode()).hexdigest()[:10] / "hat_configs"
    if not configs.exists():
        configs.parent.mkdir(parents=True, exist_ok=True)
        configs.symlink_to(tree / "configs")
    path = [str(tree), str(configs.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p), "HAT_NO_PROGRESS": "1"}
    # The imported package's folder goes to stderr first, so that finish() can check it.
    code = ("import sys, hat_cli; print('hat_cli from', hat_cli.__path__[0], file=sys.stderr); "
            "from hat_cli.cli.entry import main; sys.argv[0] = 'hat'; main()")
    return [sys.executable, "-c", code, *args, "--json"], env


def start(tree: Path, work: Path, name: str, *args: str) -> subprocess.Popen:
    command, env = hat_command(tree, work / "links", *args)
    stdout = open(work / f"{name}.json", "w")
    stderr = open(work / f"{name}.err", "w")
    process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=tree)
    process.tree = tree
    return process


def finish(processes: dict[str, subprocess.Popen], work: Path) -> dict[str, dict]:
    results = {}
    for name, process in processes.items():
        rc = process.wait()
        text = (work / f"{name}.json").read_text()
        err = (work / f"{name}.err").read_text()
        if rc != 0 or not text.strip():
            raise SystemExit(f"{name} failed (exit {rc}):\n{err[-1500:]}")
        imported = err.splitlines()[0].removeprefix("hat_cli from ").strip() if err else ""
        if Path(imported).resolve() != (process.tree / "hat_cli").resolve():
            raise SystemExit(f"{name} imported hat_cli from {imported}, not from {process.tree}.")
        results[name] = json.loads(text)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="the earlier code tree")
    parser.add_argument("--new", type=Path, default=HERE.parent, help="the code tree under test (default: this one)")
    parser.add_argument("--raw", type=Path, required=True, help="Multi30k's raw files (hat data --from-dir)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--arch", default="w256d2", help="a bench/multi30k_archs.py architecture for train-sub")
    parser.add_argument("--super-repeats", type=int, default=1,
                        help="train-super runs per tree at the same seed: GPU runs of it differ run to run, and the "
                             "old tree's own spread is the yardstick for old against new")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    started = time.time()

    data = work / "data"
    if not list(data.glob("dict.*.txt")):
        finish({"data": start(trees["new"], work, "data", "data", "--task", TASK, "--data-dir", str(data),
                              "--from-dir", str(args.raw))}, work)
    subprocess.check_call([sys.executable, str(HERE / "multi30k_archs.py"), str(work / "arch")])
    arch = work / "arch" / f"{args.arch}.yml"

    trainings = {}
    for label, tree in trees.items():
        for repeat in range(args.super_repeats):
            name = f"super-{label}" + (f"-{repeat + 1}" if repeat else "")
            trainings[name] = start(tree, work, name, "train-super", "--task", TASK, "--data-dir", str(data),
                                    "--save-dir", str(work / name), "--no-resume")
        trainings[f"sub-{label}"] = start(tree, work, f"sub-{label}", "train-sub", "--task", TASK, "--arch", str(arch),
                                          "--data-dir", str(data), "--save-dir", str(work / f"sub-{label}"), "--no-resume")
    trained = finish(trainings, work)
    tests = {f"test-{label}": start(tree, work, f"test-{label}", "test", str(work / f"sub-{label}" / "model"), "--task", TASK,
                                    "--data-dir", str(data), "--output", str(work / f"hyp-{label}.txt"))
             for label, tree in trees.items()}
    tested = finish(tests, work)

    def super_runs(label: str, which: str) -> list[float]:
        return [trained[f"super-{label}" + (f"-{r + 1}" if r else "")]["valid_loss"][which] for r in range(args.super_repeats)]

    rows = []
    for which in ("largest", "smallest"):
        # With repeats, the means of each tree's runs are compared; the noise column says whether the difference is
        # within two standard errors of the runs' own spread (GPU runs of one seed differ, docs in the module).
        old_runs, new_runs = super_runs("old", which), super_runs("new", which)
        old, new = statistics.fmean(old_runs), statistics.fmean(new_runs)
        row = {"measure": f"SuperTransformer valid loss, {which} (bits)" + (" (mean of repeats)" if args.super_repeats > 1 else ""),
               "old": old, "new": new, "difference": new - old, "tolerance": LOSS_TOLERANCE_BITS,
               "within": abs(new - old) <= LOSS_TOLERANCE_BITS}
        if args.super_repeats > 1:
            noise = 2 * math.sqrt((statistics.variance(old_runs) + statistics.variance(new_runs)) / args.super_repeats)
            row["within_noise"] = abs(new - old) <= noise
            row["two_standard_errors"] = noise
        rows.append(row)
    for name, old, new, tolerance in (
        (f"SubTransformer {args.arch} valid loss (bits)", trained["sub-old"]["valid_loss"], trained["sub-new"]["valid_loss"],
         LOSS_TOLERANCE_BITS),
        (f"SubTransformer {args.arch} test BLEU", tested["test-old"]["bleu"], tested["test-new"]["bleu"], BLEU_TOLERANCE),
    ):
        rows.append({"measure": name, "old": old, "new": new, "difference": new - old, "tolerance": tolerance,
                     "within": abs(new - old) <= tolerance})
    for label in trees if args.super_repeats > 1 else ():
        for which in ("largest", "smallest"):
            runs = super_runs(label, which)
            rows.append({"measure": f"SuperTransformer valid loss, {which}, {label} tree, repeats at seed 1 (spread)",
                         "old": min(runs), "new": max(runs), "difference": max(runs) - min(runs),
                         "tolerance": LOSS_TOLERANCE_BITS, "within": max(runs) - min(runs) <= LOSS_TOLERANCE_BITS,
                         "runs": runs, "spread_only": True})
    speed = {name: trained[name]["tokens_per_second"] for name in trained}
    verdict = all(r["within"] for r in rows if not r.get("spread_only"))
    lines = [f"{TASK}, task defaults, seed 1; old = {trees['old']}, new = {trees['new']}; all trainings side by side",
             f"{'measure':<46} {'old':>9} {'new':>9} {'new-old':>9}  within"]
    lines += [f"{r['measure']:<46} {r['old']:>9.4f} {r['new']:>9.4f} {r['difference']:>+9.4f}  {r['within']} (±{r['tolerance']})"
              + (f"; within the runs' noise (±{r['two_standard_errors']:.4f}): {r['within_noise']}" if "within_noise" in r else "")
              for r in rows if not r.get("spread_only")]
    lines += [f"{r['measure']}: {', '.join(f'{v:.4f}' for v in r['runs'])}; spread {r['difference']:.4f}"
              for r in rows if r.get("spread_only")]
    lines.append("training tokens/s (sharing the GPU): " + ", ".join(f"{k} {v / 1e3:.1f}k" for k, v in speed.items()))
    lines.append(f"equivalent: {verdict}; {time.time() - started:.0f} s in all")
    text = "\n".join(lines)
    print(text)
    (work / "equivalence.txt").write_text(text + "\n")
    (work / "equivalence.json").write_text(json.dumps({"rows": rows, "tokens_per_second": speed, "equivalent": verdict},
                                                      indent=2) + "\n")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
