"""`hat latency-server` and the `remote` backend, with a real server process on 127.0.0.1.

The server measures with its PyTorch `cpu` backend on the tiny demo task (two timed runs, no warm-up), so
every request is quick; what is tested is the protocol around it: the token, refused bodies and
architectures, one measurement at a time, and a server killed in the middle of a collection.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hat_cli.latency.meters import TimedShape
from hat_cli.model.space import SearchSpace
from hat_cli.tasks import get_task

TOKEN = "test-token-0123456789"


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, HAT_NO_PROGRESS="1", OMP_NUM_THREADS="1", HAT_LATENCY_TOKEN=TOKEN)
    env.pop("HAT_PLUGINS", None)
    env.pop("HAT_REMOTE", None)
    return {**env, **extra}


class Server:
    """`hat latency-server` in its own process; ``url`` once it listens."""

    def __init__(self, port: int = 0, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "hat_cli.cli.app", "latency-server", "--host", "127.0.0.1", "--port", str(port)],
                                        env=env or _env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.process.stderr.readline()
        if "listening on" not in line:
            self.process.kill()
            raise AssertionError(f"the server did not start: {line}{self.process.stderr.read()}")
        self.url = line.split("listening on ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1])
        # keep draining its log so that it never blocks on a full pipe
        threading.Thread(target=self.process.stderr.read, daemon=True).start()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.kill()


def _post(url: str, path: str, body: bytes, token: str | None = TOKEN):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=body, headers=headers, method="POST"), timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _request(arch=None, **changes) -> dict:
    task = get_task("demo")
    space = SearchSpace.builtin(task.latency_space)
    body = {"backend": "cpu", "arch": (arch or space.smallest()).to_dict(),
            "shape": TimedShape.of_task(task, space.shape, space.name).to_dict(),
            "protocol": {"warmup": 0, "repetitions": 2}}
    body.update(changes)
    return body


def test_requests_without_the_token_are_refused(server):
    body = json.dumps(_request()).encode()
    for token in (None, "wrong-token-0123456789", TOKEN[:-1]):
        status, answer = _post(server.url, "/v1/measure", body, token)
        assert status == 401 and "token" in answer["error"]
    status, answer = _post(server.url, "/v1/measure", body)
    assert status == 200 and len(answer["timings"]["encoder_ms"]) >= 1


def test_oversized_bodies_and_foreign_architectures_are_refused(server):
    status, answer = _post(server.url, "/v1/measure", b"{" + b" " * 70_000 + b"}")
    assert status == 413 and "limit" in answer["error"]
    wide = _request()
    wide["arch"]["encoder_embed_dim"] = 4096  # not a choice of the demo space
    status, answer = _post(server.url, "/v1/measure", json.dumps(wide).encode())
    assert status == 422 and "encoder_embed_dim" in answer["error"]
    bigger_vocab = _request()
    bigger_vocab["shape"]["tgt_vocab"] = 900_000  # a shape other than the task's
    status, answer = _post(server.url, "/v1/measure", json.dumps(bigger_vocab).encode())
    assert status == 422 and "timed shape" in answer["error"]
    status, answer = _post(server.url, "/v1/measure", json.dumps(_request(protocol={"repetitions": 10**6})).encode())
    assert status == 422 and "limit" in answer["error"]
    status, answer = _post(server.url, "/v1/measure", json.dumps(_request(backend="remote")).encode())
    assert status == 422 and "no backend 'remote'" in answer["error"]


def test_one_measurement_at_a_time(server):
    body = json.dumps(_request(protocol={"warmup": 0, "repetitions": 6})).encode()
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(_post(server.url, "/v1/measure", body))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = sorted((a["started"], a["finished"]) for status, a in answers if status == 200)
    assert len(spans) == 3
    assert all(previous[1] <= current[0] for previous, current in zip(spans, spans[1:]))


def _collect(url: str, csv_path: Path, samples: int, **popen):
    args = [sys.executable, "-m", "hat_cli.cli.app", "collect-latency", "--hw", "remote", "--remote", url, "--backend", "cpu",
            "--task", "demo", "--samples", str(samples), "--repetitions", "2", "--warmup", "0", "--reference-every", "3",
            "--csv", str(csv_path), "--json"]
    return subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_server_killed_mid_collection_then_rerun_resumes_without_lost_or_duplicated_rows(tmp_path):
    first = Server()
    out = tmp_path / "remote.csv"
    samples = 9
    collecting = _collect(first.url, out, samples)
    deadline = time.time() + 300
    while not out.exists() or len(_rows(out)) < 3:
        assert collecting.poll() is None, collecting.stderr.read()
        assert time.time() < deadline
        time.sleep(0.05)
    first.kill()
    stdout, stderr = collecting.communicate(timeout=120)
    assert collecting.returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == stderr.strip().splitlines()[-1]  # one sentence, the last thing said
    assert first.url in errors[0] and "stopped answering" in errors[0] and "rerun" in errors[0]
    before = _rows(out)
    assert 3 <= len(before) < samples + 3

    second = Server(port=first.port)  # the device comes back at the same address
    try:
        rerun = _collect(second.url, out, samples)
        stdout, stderr = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, stderr
    finally:
        second.kill()
    rows = _rows(out)
    assert rows[: len(before)] == before  # nothing rewritten
    sampled = [int(r["sample_index"]) for r in rows if r["reference"] == "0"]
    references = [int(r["sample_index"]) for r in rows if r["reference"] == "1"]
    assert sorted(sampled) == list(range(samples))  # none lost, none twice
    assert sorted(references) == [0, 3, 6]
    assert {r["hardware"] for r in rows} == {"remote-cpu"} and all("127.0.0.1" in r["device"] for r in rows)
    assert json.loads(stdout)["rows"] == samples


def test_the_client_says_what_is_missing(tmp_path, server):
    env = _env()
    env.pop("HAT_LATENCY_TOKEN")
    args = [sys.executable, "-m", "hat_cli.cli.app", "profile", str(tmp_path / "x.yml"), "--task", "demo", "--hw", "remote"]
    (tmp_path / "x.yml").write_text(json.dumps(SearchSpace.builtin("demo").smallest().to_hat_keys()))
    no_url = subprocess.run(args, env=env, capture_output=True, text=True)
    assert no_url.returncode == 2 and "--remote" in no_url.stderr
    no_token = subprocess.run(args + ["--remote", server.url], env=env, capture_output=True, text=True)
    assert no_token.returncode == 2 and "HAT_LATENCY_TOKEN" in no_token.stderr
    measured = subprocess.run(args + ["--json"], env=_env(HAT_REMOTE=server.url), capture_output=True, text=True)
    assert measured.returncode == 0, measured.stderr
    assert json.loads(measured.stdout)["hardware"] == "remote-cpu"


def test_the_server_will_not_start_without_a_token():
    env = _env()
    env.pop("HAT_LATENCY_TOKEN")
    done = subprocess.run([sys.executable, "-m", "hat_cli.cli.app", "latency-server", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "HAT_LATENCY_TOKEN" in done.stderr


def test_fit_predictor_finds_the_default_dataset_a_remote_collection_wrote(tmp_path, server):
    """collect-latency --hw remote names its CSV after the device's backend (remote-cpu); fit-predictor --hw remote
    finds it and writes the predictor where search --hw remote looks (latency_dataset/demo_remote.predictor)."""
    args = [sys.executable, "-m", "hat_cli.cli.app", "collect-latency", "--hw", "remote", "--remote", server.url, "--backend", "cpu",
            "--task", "demo", "--samples", "12", "--repetitions", "2", "--warmup", "0", "--reference-every", "4", "--json"]
    collected = subprocess.run(args, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "latency_dataset" / "demo_remote-cpu.csv").is_file()
    fit = subprocess.run([sys.executable, "-m", "hat_cli.cli.app", "fit-predictor", "--hw", "remote", "--task", "demo", "--json"],
                         env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert fit.returncode == 0, fit.stderr
    assert (tmp_path / "latency_dataset" / "demo_remote.predictor").exists()
    # a second device's collection makes the default ambiguous: one sentence, exit 2
    (tmp_path / "latency_dataset" / "demo_remote-pi.csv").write_text((tmp_path / "latency_dataset" / "demo_remote-cpu.csv").read_text())
    again = subprocess.run([sys.executable, "-m", "hat_cli.cli.app", "fit-predictor", "--hw", "remote", "--task", "demo"],
                           env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "Several latency datasets for 'remote'" in " ".join(again.stderr.split())
