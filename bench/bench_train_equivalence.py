"""Does faster training still train the same? Two code trees, the same Multi30k runs, side by side on one GPU.

Issue 16's check: `hat train-super` and `hat train-sub` with the Multi30k task defaults, run by an earlier code
tree (`--old`, e.g. a `git archive` of main) and by this one (`--new`), all trainings at once on one GPU (the
tokens/s it prints are shared between them), then `hat test` of every SubTransformer. Passes when every
validation loss agrees within 0.02 bits and the test BLEU within 0.5, compared as means over runs:

- A SuperTransformer's inherited losses differ between GPU runs of one code and seed (up to 0.25 bits on
  Multi30k, bench/RESULTS.md), so `--super-repeats K` trains each tree's seed 1 K times.
- A SubTransformer's training repeats to the last digit, but a change that only moves float rounding sends it
  down another path: its BLEU then differs by about the seed noise (a standard deviation of 0.6 on Multi30k,
  more than the 0.5 tolerance). `--sub-seeds K` trains seeds 1..K with each tree.

With two runs or more on each side, each row also says whether the difference is within two standard errors of
the runs' own spread. (The twelfth session's recorded result was put together from one run of this bench without
these options and the same `hat` commands run by hand for the further seeds and repeats; see bench/RESULTS.md.)

    python bench/bench_train_equivalence.py --old ../base --new . --raw DIR_WITH_MULTI30K_RAW --work DIR \
        --super-repeats 3 --sub-seeds 4

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


def compare(measure: str, old_runs: list[float], new_runs: list[float], tolerance: float) -> dict:
    """One row: the means of each tree's runs against the tolerance, and, with two runs or more on each side,
    whether the difference is within two standard errors of the runs' own spread (the yardstick when single runs
    of one code differ by more than the tolerance)."""
    old, new = statistics.fmean(old_runs), statistics.fmean(new_runs)
    row = {"measure": measure + (" (means)" if max(len(old_runs), len(new_runs)) > 1 else ""), "old": old, "new": new,
           "difference": new - old, "tolerance": tolerance, "within": abs(new - old) <= tolerance,
           "old_runs": old_runs, "new_runs": new_runs}
    if len(old_runs) > 1 and len(new_runs) > 1:
        noise = 2 * math.sqrt(statistics.variance(old_runs) / len(old_runs) + statistics.variance(new_runs) / len(new_runs))
        row["within_noise"] = abs(new - old) <= noise
        row["two_standard_errors"] = noise
    return row


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
    parser.add_argument("--sub-seeds", type=int, default=1,
                        help="train-sub runs per tree with seeds 1..K: a change of float rounding moves one seed's "
                             "BLEU by about the seed noise (0.6 on Multi30k), so K seeds' means are compared")
    parser.add_argument("--max-updates", type=int, default=None,
                        help="a smoke test, not the check: trainings of N updates, tested greedily with at most 8 "
                             "tokens per sentence (an untrained model otherwise decodes to the length limit)")
    args = parser.parse_args()
    if args.super_repeats < 1 or args.sub_seeds < 1:
        parser.error("--super-repeats and --sub-seeds take 1 or more")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    started = time.time()
    shorter = ("--max-updates", str(args.max_updates)) if args.max_updates else ()
    quicker_test = ("--beam", "1", "--max-len-a", "0", "--max-len-b", "8") if args.max_updates else ()

    data = work / "data"
    if not list(data.glob("dict.*.txt")):
        finish({"data": start(trees["new"], work, "data", "data", "--task", TASK, "--data-dir", str(data),
                              "--from-dir", str(args.raw))}, work)
    subprocess.check_call([sys.executable, str(HERE / "multi30k_archs.py"), str(work / "arch")])
    arch = work / "arch" / f"{args.arch}.yml"

    def numbered(stem: str, index: int) -> str:  # the first run keeps the plain name (as earlier versions wrote it)
        return stem + (f"-{index + 1}" if index else "")

    trainings = {}
    for label, tree in trees.items():
        for repeat in range(args.super_repeats):
            name = numbered(f"super-{label}", repeat)
            trainings[name] = start(tree, work, name, "train-super", "--task", TASK, "--data-dir", str(data),
                                    "--save-dir", str(work / name), "--no-resume", *shorter)
        for seed in range(args.sub_seeds):
            name = numbered(f"sub-{label}", seed)
            trainings[name] = start(tree, work, name, "train-sub", "--task", TASK, "--arch", str(arch),
                                    "--data-dir", str(data), "--save-dir", str(work / name), "--no-resume",
                                    "--seed", str(seed + 1), *shorter)
    trained = finish(trainings, work)
    tests = {}
    for label, tree in trees.items():
        for seed in range(args.sub_seeds):
            name = numbered(f"test-{label}", seed)
            tests[name] = start(tree, work, name, "test", str(work / numbered(f"sub-{label}", seed) / "model"),
                                "--task", TASK, "--data-dir", str(data),
                                "--output", str(work / (numbered(f"hyp-{label}", seed) + ".txt")), *quicker_test)
    tested = finish(tests, work)

    def runs(results: dict, stem: str, count: int, pick) -> list[float]:
        return [float(pick(results[numbered(stem, index)])) for index in range(count)]

    rows = [compare(f"SuperTransformer valid loss, {which} (bits)",
                    *(runs(trained, f"super-{label}", args.super_repeats, lambda r: r["valid_loss"][which]) for label in ("old", "new")),
                    LOSS_TOLERANCE_BITS)
            for which in ("largest", "smallest")]
    rows.append(compare(f"SubTransformer {args.arch} valid loss (bits)",
                        *(runs(trained, f"sub-{label}", args.sub_seeds, lambda r: r["valid_loss"]) for label in ("old", "new")),
                        LOSS_TOLERANCE_BITS))
    rows.append(compare(f"SubTransformer {args.arch} test BLEU",
                        *(runs(tested, f"test-{label}", args.sub_seeds, lambda r: r["bleu"]) for label in ("old", "new")),
                        BLEU_TOLERANCE))
    speed = {name: trained[name]["tokens_per_second"] for name in trained}
    verdict = all(r["within"] for r in rows)
    within_noise = all(r.get("within_noise", r["within"]) for r in rows)
    lines = [f"{TASK}, task defaults{f' (max {args.max_updates} updates)' if args.max_updates else ''}; train-super seed 1 "
             f"x {args.super_repeats}, train-sub seed{f's 1..{args.sub_seeds}' if args.sub_seeds > 1 else ' 1'}; old = {trees['old']}, new = {trees['new']}; "
             "all trainings side by side",
             f"{'measure':<52} {'old':>9} {'new':>9} {'new-old':>9}  within"]
    lines += [f"{r['measure']:<52} {r['old']:>9.4f} {r['new']:>9.4f} {r['difference']:>+9.4f}  {r['within']} (±{r['tolerance']})"
              + (f"; within the runs' noise (±{r['two_standard_errors']:.4f}): {r['within_noise']}" if "within_noise" in r else "")
              for r in rows]
    lines += [f"  {r['measure']}: old {', '.join(f'{v:.4f}' for v in r['old_runs'])}; new {', '.join(f'{v:.4f}' for v in r['new_runs'])}"
              for r in rows if len(r["old_runs"]) > 1 or len(r["new_runs"]) > 1]
    lines.append("training tokens/s (sharing the GPU): " + ", ".join(f"{k} {v / 1e3:.1f}k" for k, v in speed.items()))
    lines.append(f"equivalent: {verdict} (every mean within its tolerance); within the runs' own noise: {within_noise}; "
                 f"{time.time() - started:.0f} s in all")
    text = "\n".join(lines)
    print(text)
    (work / "equivalence.txt").write_text(text + "\n")
    (work / "equivalence.json").write_text(json.dumps({"rows": rows, "tokens_per_second": speed, "equivalent": verdict,
                                                       "within_noise": within_noise}, indent=2) + "\n")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
