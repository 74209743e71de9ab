"""The search against hand-scaled Transformers on one GPU, and the rank fidelity of its proxies (issue 17).

    python bench/bench_search_front.py --raw DIR_WITH_MULTI30K_RAW --work runs/front [--recorded DIR]
        [--rerank-metric loss|bleu] [--deadline-min 20] [--hard-deadline-min 23] [--dry-run]

Everything goes through `hat` with the Multi30k task defaults, on one GPU:

1. quiet GPU: `hat data`; `hat collect-latency --hw cuda` (150 samples, a drift reference every 10);
   `hat fit-predictor`; `hat profile --hw cuda` of the plain 256-wide models with 1, 2 and 3 decoder layers,
   whose measured latencies are the three budgets;
2. side by side: `hat train-super` twice (HAT's one random SubTransformer per update, and the sandwich rule
   with in-place distillation and, since the eleventh session, one hand-scaled draw per update:
   `--sandwich-hand-scaled 0` gives the sandwich of the earlier runs recorded in bench/RESULTS.md); `hat train-sub` + `hat test` of the plain families scaled by depth and width
   (256, 384, 512 wide; 1-3 decoder layers), the largest and smallest SubTransformers and three random ones,
   validated every 250 updates (the short-training proxies of the rank-fidelity table). With --recorded, the
   runs found there (an earlier call's sub-NAME-s1/{model/config.json,train_log.jsonl}, json/NAME-s1.1.json,
   json/profile-NAME.json) are taken as they are and not trained again: with a fixed seed they are the same;
3. once the sandwich SuperTransformer is trained: `hat search` at each budget (`--margin auto --rerank 3
   --rerank-jobs 3`: the best candidates of three cells, or two and the largest plain Transformer that fits,
   trained side by side; `--rerank-metric bleu` picks by validation BLEU), while other jobs train; then,
   with the GPU to itself, the same search again with `--verify`: its scores and re-ranking are reused from
   the folder, so it only measures, and a winner that measures over budget gives way to the next candidate;
   each verified winner trained with seeds 1 and 2 and tested; the best plain models' second seeds;
4. quiet GPU again: every winner measured by `hat profile --hw cuda` in a fresh process, the first budget's
   plain model again (drift over the call), and the inherited validation losses of every trained architecture
   under both SuperTransformers (bench/bench_rank_fidelity.py).

Jobs run at most ``--slots`` at a time in priority order (a search with re-ranking counts as its
``--rerank-jobs``); a quiet job waits until nothing runs, and nothing starts while it waits or runs. Past
``--deadline-min`` no job starts and the plain second seeds stop; past ``--hard-deadline-min`` every job
stops, so that step 4 always runs. Everything lands in --work (json/, logs, timeline.txt);
`python bench/search_front_report.py --work DIR` makes the tables and the plot. With --dry-run the same plan runs on the CPU on the demo task in a few minutes (a check of the
plumbing, not of the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXPENDABLE = 40  # jobs of this priority or lower rank (the plain models' second seeds) stop first at the deadline


@dataclass
class Job:
    name: str
    commands: list[list[str]]
    priority: int
    after: set[str] = field(default_factory=set)  # job names that must have finished
    ready: object = None  # optional callable: extra condition (e.g. a file exists)
    expand: object = None  # optional callable run when the job finishes: returns new jobs
    weight: int = 1  # slots it takes (a search that trains candidates side by side takes more)
    quiet: bool = False  # needs the GPU to itself (latency measurement)
    process: subprocess.Popen | None = None
    step: int = 0
    started: float = 0.0
    done: bool = False
    rc: int | None = None


class Pipeline:
    def __init__(self, work: Path, slots: int, deadline_s: float, hard_deadline_s: float, env: dict[str, str]):
        self.work, self.slots, self.env = work, slots, env
        self.deadline, self.hard_deadline = time.time() + deadline_s, time.time() + max(deadline_s, hard_deadline_s)
        self.jobs: dict[str, Job] = {}
        self.t0 = time.time()

    def log(self, message: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {message}"
        print(line, flush=True)
        with open(self.work / "timeline.txt", "a") as handle:
            handle.write(line + "\n")

    def add(self, job: Job) -> None:
        self.jobs[job.name] = job

    def _start_step(self, job: Job) -> None:
        command = job.commands[job.step]
        stdout = open(self.work / "json" / f"{job.name}.{job.step}.json", "w")
        stderr = open(self.work / "logs" / f"{job.name}.err", "a")
        job.process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=self.env, start_new_session=True)

    def run(self) -> None:
        while True:
            running = [j for j in self.jobs.values() if j.process is not None and not j.done]
            for job in running:
                rc = job.process.poll()
                if rc is None:
                    continue
                if rc == 0 and job.step + 1 < len(job.commands):
                    job.step += 1
                    self._start_step(job)
                    continue
                job.done, job.rc = True, rc
                self.log(f"done {job.name} rc={rc} in {time.time() - job.started:.0f} s")
                if rc == 0 and job.expand is not None:
                    for new in job.expand():
                        self.add(new)
            now = time.time()
            if now > self.deadline:
                # Past the deadline nothing starts, and the expendable jobs stop at once; the others (the
                # winners' trainings) may run on until the hard deadline, so that their results are not lost.
                for job in self.jobs.values():
                    if job.process is None and not job.done:
                        job.done, job.rc = True, None
                        self.log(f"not started: {job.name}")
                    elif not job.done and (job.priority >= EXPENDABLE or now > self.hard_deadline):
                        os.killpg(job.process.pid, signal.SIGTERM)
                        job.done, job.rc = True, -15
                        self.log(f"stopped {job.name} at the {'hard ' if now > self.hard_deadline else ''}deadline")
                if all(j.done for j in self.jobs.values()):
                    return
                time.sleep(1.0)
                continue
            running = [j for j in self.jobs.values() if j.process is not None and not j.done]
            busy = sum(j.weight for j in running)
            if any(j.quiet for j in running):
                busy = self.slots
            waiting = sorted((j for j in self.jobs.values() if j.process is None and not j.done), key=lambda j: j.priority)
            startable = []
            for job in waiting:
                failed = [a for a in job.after if a in self.jobs and self.jobs[a].done and self.jobs[a].rc != 0]
                if failed:
                    job.done, job.rc = True, None
                    self.log(f"skipped {job.name}: {failed[0]} failed")
                    continue
                if any(a not in self.jobs or not self.jobs[a].done for a in job.after):
                    continue
                if job.ready is not None and not job.ready():
                    continue
                startable.append(job)
            quiet = [j for j in startable if j.quiet]
            if quiet:  # a quiet job waits for the GPU to empty, and nothing else starts meanwhile
                startable = quiet[:1] if not running else []
            for job in startable:
                if busy + (0 if job.quiet else job.weight) > self.slots and busy > 0:
                    break
                job.started = time.time()
                self._start_step(job)
                busy += self.slots if job.quiet else job.weight
                self.log(f"start {job.name}")
            if all(j.done for j in self.jobs.values()):
                return
            time.sleep(1.0)


def hat(*args: str) -> list[str]:
    return ["hat", *args, "--json"]


def run_quiet(p: Pipeline, name: str, command: list[str]) -> dict:
    """A step that must have the GPU to itself: run alone, in the foreground."""
    started = time.time()
    out = p.work / "json" / f"{name}.json"
    with open(out, "w") as stdout, open(p.work / "logs" / f"{name}.err", "w") as stderr:
        rc = subprocess.call(command, stdout=stdout, stderr=stderr, env=p.env)
    p.log(f"quiet {name} rc={rc} in {time.time() - started:.0f} s")
    if rc != 0:
        return {}
    try:
        return json.loads(out.read_text())
    except ValueError:
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=Path, help="folder with Multi30k's raw train/valid/test files (hat data --from-dir)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--slots", type=int, default=12)
    parser.add_argument("--deadline-min", type=float, default=20.0,
                        help="minutes after which no job starts and the expendable ones (plain second seeds) stop")
    parser.add_argument("--hard-deadline-min", type=float, default=23.0, help="minutes after which every job stops")
    parser.add_argument("--samples", type=int, default=150)
    parser.add_argument("--rerank", type=int, default=3)
    parser.add_argument("--rerank-jobs", type=int, default=3)
    parser.add_argument("--rerank-metric", choices=("loss", "bleu"), default="loss")
    parser.add_argument("--rerank-seeds", type=int, default=1, help="hat search's: trainings per re-ranked candidate")
    parser.add_argument("--recorded", type=Path, help="an earlier call's work folder: its standalone runs are reused")
    parser.add_argument("--rerank-updates", type=int, default=None, help="default: hat search's (60%% of train-sub's updates)")
    parser.add_argument("--ours-supernet", choices=("sandwich", "hat"), default="sandwich",
                        help="the SuperTransformer the searches use (both are trained; the rank-fidelity table scores both)")
    parser.add_argument("--distill", default="0.5")
    parser.add_argument("--sandwich-hand-scaled", default="1",
                        help="plain Transformers drawn per sandwich update besides the random one (train-super's option; "
                             "1 ordered the Multi30k set best, tau 0.66 and 0.65 at two seeds against 0.34 and 0.46 without, bench/RESULTS.md; "
                             "0: the plain sandwich)")
    parser.add_argument("--only-ours-supernet", action="store_true",
                        help="train only the SuperTransformer the searches use (the rank-fidelity table then scores that one)")
    parser.add_argument("--second-seeds", default="w256d1,w256d2,plain1,w384d2,w256d3,w384d1",
                        help="plain models trained with seed 2 beside the winners (comma-separated; recorded ones are reused)")
    parser.add_argument("--dry-run", action="store_true", help="the demo task on the CPU with tiny settings")
    args = parser.parse_args()

    work = args.work.resolve()
    for sub in ("json", "logs", "arch"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HAT_NO_PROGRESS="1", PYTHONUNBUFFERED="1",
               PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True")
    p = Pipeline(work, args.slots, args.deadline_min * 60, args.hard_deadline_min * 60, env)
    dry = args.dry_run
    task = "demo" if dry else "multi30k.de-en"
    hw = "cpu" if dry else "cuda"
    data = str(work / "data")
    small = (["--max-updates", "40", "--validate-every", "10", "--save-interval", "10", "--device", "cpu"] if dry
             else ["--validate-every", "250", "--keep-last", "4"])
    sub_small = small + (["--keep-last", "4"] if dry else [])
    search_small = (["--population", "10", "--parents", "2", "--mutations", "4", "--crossovers", "4", "--iterations", "2",
                     "--valid-subset", "100", "--device", "cpu", "--rerank-updates", "10"] if dry
                    else (["--rerank-updates", str(args.rerank_updates)] if args.rerank_updates else []))
    p.log(f"start: task {task}, hw {hw}, {args.slots} slots, deadline {args.deadline_min} min")

    # ---- 1. quiet: data, latency, budgets
    if not list((work / "data").glob("dict.*.txt")):
        run_quiet(p, "data", hat("data", "--task", task, "--data-dir", data,
                                 *([] if dry else ["--from-dir", str(args.raw)])))
    # The architectures: the plain families and the extremes (bench/multi30k_archs.py), two random samples.
    subprocess.check_call([sys.executable, str(HERE / "multi30k_archs.py"), str(work / "arch"), *(["--space", "demo"] if dry else [])])
    csv, predictor = work / "latency.csv", work / "latency.predictor"
    run_quiet(p, "collect-latency", hat("collect-latency", "--hw", hw, "--task", task, "--samples", str(20 if dry else args.samples),
                                        "--csv", str(csv), "--reference-every", "10", "--seed", "1",
                                        *(["--repetitions", "3"] if dry else [])))
    run_quiet(p, "fit-predictor", hat("fit-predictor", "--dataset", str(csv), "--out", str(predictor)))
    budgets = {}
    for depth in (1, 2, 3):
        name = f"w256d{depth}"
        doc = run_quiet(p, f"profile-{name}", hat("profile", str(work / "arch" / f"{name}.yml"), "--task", task, "--hw", hw))
        if doc:
            budgets[depth] = float(doc["latency_ms"]["total"])
    (work / "budgets.json").write_text(json.dumps(budgets, indent=2) + "\n")
    p.log(f"budgets {budgets}")

    # ---- 2. side by side: SuperTransformers and standalone models
    if args.recorded:  # an earlier call's standalone runs of the same architectures, seeds and defaults
        for run in sorted(args.recorded.glob("sub-*")):
            name = run.name[4:]
            if (run / "model" / "config.json").exists() and (args.recorded / "json" / f"{name}.1.json").exists():
                shutil.copytree(run, work / run.name, dirs_exist_ok=True)
                for doc in (f"{name}.1.json", f"profile-{name.rsplit('-', 1)[0]}.json"):  # this call's profiles win
                    if (args.recorded / "json" / doc).exists() and not (work / "json" / doc).exists():
                        shutil.copy(args.recorded / "json" / doc, work / "json" / doc)
                p.log(f"recorded {name}")

    def train_and_test(name: str, arch: str, seed: int, priority: int, after=(), extra=()) -> Job | None:
        save = work / f"sub-{name}"
        if (save / "model" / "config.json").exists() and (work / "json" / f"{name}.1.json").exists():
            return None  # recorded
        cleanup = [sys.executable, "-c", f"import shutil,glob; [shutil.rmtree(d) for d in glob.glob('{save}/checkpoint_*')]"]
        return Job(name, [
            hat("train-sub", "--task", task, "--arch", arch, "--data-dir", data, "--save-dir", str(save), "--seed", str(seed),
                *sub_small, *extra),
            hat("test", str(save / "model"), "--task", task, "--data-dir", data, "--output", str(work / f"hyp-{name}.txt"),
                *(["--device", "cpu"] if dry else [])),
            cleanup,
        ], priority, set(after))

    def add(job: Job | None) -> None:
        if job is not None:
            p.add(job)

    super_args = ["--task", task, "--data-dir", data, *(small if dry else ["--keep-last", "2"])]
    if not args.only_ours_supernet or args.ours_supernet == "sandwich":
        p.add(Job("super-sandwich", [hat("train-super", *super_args, "--save-dir", str(work / "super-sandwich"),
                                         "--sampling", "sandwich", "--sandwich-random", "1", "--distill", args.distill,
                                         "--sandwich-hand-scaled", args.sandwich_hand_scaled)], 0))
    if not args.only_ours_supernet or args.ours_supernet == "hat":
        p.add(Job("super-hat", [hat("train-super", *super_args, "--save-dir", str(work / "super-hat"))], 1))
    fixed = [f"w256d{d}" for d in (1, 2, 3)] + [f"w384d{d}" for d in (1, 2, 3)] + [f"plain{d}" for d in (1, 2, 3)] \
        + ["largest", "smallest", "random11", "random12", "random13"]
    for i, name in enumerate(fixed):
        add(train_and_test(f"{name}-s1", str(work / "arch" / f"{name}.yml"), 1, 10 + i))

    # ---- 3. searches at the budgets (busy GPU), verified with the GPU to themselves, then their winners
    def search_command(depth: int, budget: float, verify: bool) -> list[str]:
        out = work / f"search-ours-d{depth}"
        return hat("search", "--task", task, "--hw", hw, "--latency", f"{budget:.4f}ms", "--supernet",
                   str(work / f"super-{args.ours_supernet}" / "model"), "--data-dir", data, "--predictor", str(predictor),
                   "--out", str(out), "--margin", "auto", "--rerank", str(args.rerank), "--rerank-jobs", str(args.rerank_jobs),
                   "--rerank-metric", args.rerank_metric, "--rerank-seeds", str(args.rerank_seeds),
                   *(["--verify"] if verify else []), *search_small)

    supernet_job = f"super-{args.ours_supernet}"
    for depth, budget in budgets.items():
        name = f"search-ours-d{depth}"

        def winners(depth=depth) -> list[Job]:
            arch = str(work / f"search-ours-d{depth}" / "subtransformer.yml")
            return [j for j in (train_and_test(f"ours-d{depth}-s{seed}", arch, seed, 2 + seed) for seed in (1, 2)) if j]

        p.add(Job(name, [search_command(depth, budget, False)], 3, {supernet_job}, weight=max(1, args.rerank_jobs)))
        p.add(Job(f"verify-ours-d{depth}", [search_command(depth, budget, True)], 2, {name}, quiet=True, expand=winners))
    # The best plain models at each budget (seed 1, recorded), second seeds: last, beside the winners (started
    # earlier, they would hold up the quiet verifications, which wait for an empty GPU).
    verified = {f"verify-ours-d{depth}" for depth in budgets}
    for i, name in enumerate(n for n in args.second_seeds.split(",") if n):
        job = train_and_test(f"{name}-s2", str(work / "arch" / f"{name}.yml"), 2, 40 + i)
        if job is not None:  # whether the verifications succeeded or not
            job.ready = lambda: all(p.jobs[n].done for n in verified if n in p.jobs)
            add(job)

    p.run()

    # ---- 4. quiet again: fresh-process latency of every winner; inherited losses of every architecture
    for out in sorted(work.glob("search-*")):
        if (out / "subtransformer.yml").exists():
            run_quiet(p, f"profile-{out.name}", hat("profile", str(out / "subtransformer.yml"), "--task", task, "--hw", hw))
    for yml in sorted((work / "arch").glob("*.yml")):  # the trained ones not measured yet
        if (work / "json" / f"{yml.stem}-s1.1.json").exists() and not (work / "json" / f"profile-{yml.stem}.json").exists():
            run_quiet(p, f"profile-{yml.stem}", hat("profile", str(yml), "--task", task, "--hw", hw))
    run_quiet(p, "profile-w256d1-again", hat("profile", str(work / "arch" / "w256d1.yml"), "--task", task, "--hw", hw))
    # every seed of an architecture under its name: the truth is their mean (bench_rank_fidelity.py)
    trained = [f"--trained={d.name[4:].rsplit('-s', 1)[0]}={d}" for d in sorted(work.glob("sub-*-s*"))
               if (d / "model" / "config.json").exists()]
    supernets = [f"--supernet={label}={work / f'super-{label}' / 'model'}" for label in ("hat", "sandwich")
                 if (work / f"super-{label}" / "model" / "config.json").exists()]
    bleu = [f"--bleu={j.stem[:-5]}={j}" for j in sorted((work / "json").glob("*-s1.1.json"))]
    run_quiet(p, "rank-fidelity", [sys.executable, str(HERE / "bench_rank_fidelity.py"), "--task", task, "--data-dir", data,
                                   *supernets, *trained, *bleu, "--out", str(work / "rank_fidelity.json")])
    for d in work.glob("super-*"):  # the weights stay on the GPU machine; free the disk
        for c in d.glob("checkpoint_*"):
            shutil.rmtree(c, ignore_errors=True)
    p.log("pipeline finished")
    (work / "DONE").write_text("done\n")


if __name__ == "__main__":
    main()
