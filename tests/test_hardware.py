"""Hardware plugins: entry points, the example third-party package, broken plugins, HAT_PLUGINS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hat_cli.core.errors import HatError
from hat_cli.latency.backends import Backend, hookimpl, load_hardware

BUILTINS = {"raspberrypi", "xeon", "titanxp", "cpu", "cuda"}


def _run_hat(args, env_extra=None, pythonpath=None):
    env = dict(os.environ, HAT_NO_PROGRESS="1")
    env.pop("HAT_PLUGINS", None)
    env.update(env_extra or {})
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "hat_cli.cli.app", *args], capture_output=True, text=True, env=env, timeout=120)


def test_builtins_register_through_entry_points():
    registry = load_hardware()
    assert BUILTINS <= set(registry.backends)
    assert registry.backends["xeon"].lat_norm == 300
    assert registry.backends["titanxp"].lat_norm == 200
    assert registry.backends["raspberrypi"].lat_norm == 5000
    assert registry.backends["cuda"].device == "cuda" and registry.backends["cpu"].device == "cpu"
    assert registry.backends["xeon"].source.startswith("hat-cli ")
    assert not registry.backends["xeon"].local and registry.backends["cpu"].local
    assert "named devices" or registry.backends["raspberrypi"].foreign_device_warning()
    assert "describe this machine" in registry.backends["raspberrypi"].foreign_device_warning()
    assert registry.backends["cpu"].foreign_device_warning() is None


def _example_installed() -> bool:
    return any(ep.name == "cpu1" for ep in entry_points(group="hat"))


@pytest.mark.skipif(not _example_installed(), reason="examples/hat-hw-example is not installed (pip install -e examples/hat-hw-example)")
def test_hw_list_shows_the_example_plugin_with_its_distribution():
    result = _run_hat(["hw", "list", "--json"])
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILTINS | {"cpu1"} <= set(rows)
    assert rows["cpu1"]["source"].startswith("hat-hw-example 0.1.0")
    assert rows["xeon"]["source"].startswith("hat-cli")
    assert all({"name", "description", "source"} <= set(r) for r in rows.values())


def test_hat_plugins_env_limits_which_plugins_load():
    result = _run_hat(["hw", "list", "--json"], {"HAT_PLUGINS": "cpu,xeon"})
    assert result.returncode == 0, result.stderr
    assert sorted(r["name"] for r in json.loads(result.stdout)) == ["cpu", "xeon"]


def _broken_plugin_dir(tmp_path: Path, how: str) -> Path:
    """A fake installed distribution whose entry point names a module that raises on import or in its hook."""
    site = tmp_path / "site"
    dist_info = site / "hat_broken_plugin-0.0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hat-broken-plugin\nVersion: 0.0.1\n")
    (dist_info / "entry_points.txt").write_text("[hat]\nbrokenhw = hat_broken_plugin\n")
    if how == "import":
        body = "raise RuntimeError('this plugin is broken on purpose')\n"
    else:
        body = textwrap.dedent(
            """
            from hat_cli.latency.backends import hookimpl

            @hookimpl
            def register_hardware(register):
                raise ValueError('hook exploded on purpose')
            """
        )
    (site / "hat_broken_plugin.py").write_text(body)
    return site


@pytest.mark.parametrize("how,message", [("import", "broken on purpose"), ("hook", "hook exploded on purpose")])
def test_broken_plugin_is_reported_by_name_and_the_cli_keeps_working(tmp_path, how, message):
    site = _broken_plugin_dir(tmp_path, how)
    result = _run_hat(["hw", "list", "--json"], pythonpath=site)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert "brokenhw" in rows and message in rows["brokenhw"]["error"]
    assert "hat-broken-plugin 0.0.1" in rows["brokenhw"]["source"]
    assert BUILTINS <= set(rows)  # the others still load
    assert "brokenhw" in result.stderr and "skipped" in result.stderr
    # Other commands still run, and the unknown-hardware message names the broken plugin.
    result = _run_hat(["collect-latency", "--hw", "brokenhw", "--task", "iwslt14.de-en", "--samples", "1"], pythonpath=site)
    assert result.returncode == 2
    assert "brokenhw" in result.stderr and "xeon" in result.stderr


def test_unknown_hardware_names_the_known_ones():
    with pytest.raises(HatError, match="known hardware: .*cpu.*xeon"):
        load_hardware().get("tpu9000")


class _DuplicatePlugin:
    @hookimpl
    def register_hardware(self, register):
        register(Backend(name="cpu", description="a second cpu"))
        register(Backend(name="npu0", description="an extra device", device="cpu", threads=1))


def test_in_process_plugin_and_duplicate_names():
    registry = load_hardware(extra_plugins=(_DuplicatePlugin(),))
    assert registry.backends["npu0"].threads == 1
    assert registry.backends["cpu"].description != "a second cpu"  # the first registration wins
    assert any("already registered" in f.error for f in registry.failures)


def test_a_device_pytorch_cannot_reach_needs_the_plugins_own_meter():
    from hat_cli.latency.backends import MeterOptions

    with pytest.raises(HatError, match="its plugin must bring a meter"):
        Backend(name="x", description="x", device="tpu").open_meter(MeterOptions())


def test_a_plugin_meter_is_what_every_measurement_uses():
    from hat_cli.latency.backends import Meter, Timings
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.model.space import SearchSpace
    from hat_cli.tasks import get_task

    calls = []

    class FormulaMeter(Meter):
        def measure(self, config, shape, protocol):
            calls.append((config, shape, protocol))
            return Timings((float(config.encoder_embed_dim),) * 2, (float(shape.length),) * 2)

        def describe(self):
            return {"device": "a formula", "precision": "fp32", "mode": "inference", "threads": "1", "runtime": "formula 1"}

    class Plugin:
        @hookimpl
        def register_hardware(self, register):
            register(Backend(name="formula", description="test", device="abacus", meter=lambda backend, options: FormulaMeter()))

    backend = load_hardware(extra_plugins=(Plugin(),)).get("formula")
    task = get_task("demo")
    space = SearchSpace.builtin(task.latency_space)
    meter = LatencyMeter(backend, task, space.shape, overrides={"repetitions": 3})
    result = meter.measure(space.largest())
    assert (result.encoder_ms, result.decoder_ms) == (64.0, float(task.dummy_length))
    assert calls[0][2].repetitions == 3 and calls[0][1].tgt_vocab == 128
    assert meter.csv_metadata()["device"] == "a formula" and meter.csv_metadata()["torch_version"] == "formula 1"


def test_hw_list_json_lists_onnxruntime_and_remote():
    result = subprocess.run([sys.executable, "-m", "hat_cli.cli.app", "hw", "list", "--json"], capture_output=True, text=True,
                            env={k: v for k, v in os.environ.items() if k != "HAT_PLUGINS"})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["onnxruntime"]["runtime"] == "onnxruntime" and rows["remote"]["runtime"] == "http"
    assert rows["onnxruntime"]["measures"] == rows["remote"]["measures"] == "own meter"
    assert rows["xeon"]["measures"].startswith("pytorch proxy")


def test_onnxruntime_without_the_extra_is_listed_and_says_how_to_install(monkeypatch):
    import importlib.util

    from hat_cli.latency.backends import MeterOptions

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxruntime") else real(name, *a))
    backend = load_hardware().get("onnxruntime")
    assert "pip install 'hat-cli[onnx]'" in backend.unavailable
    with pytest.raises(HatError, match=r"cannot measure here: .*pip install 'hat-cli\[onnx\]'"):
        backend.open_meter(MeterOptions())



def test_a_plugin_meter_that_breaks_is_one_sentence():
    from hat_cli.latency.backends import Meter
    from hat_cli.latency.meters import LatencyMeter
    from hat_cli.model.space import SearchSpace
    from hat_cli.tasks import get_task

    class Broken(Meter):
        def measure(self, config, shape, protocol):
            raise ValueError("the board did not answer")

        def describe(self):
            return {"device": "a board"}

    task = get_task("demo")
    space = SearchSpace.builtin(task.latency_space)
    failing_open = Backend(name="bad-open", description="x", device="board", meter=lambda b, o: 1 / 0)
    with pytest.raises(HatError, match="could not open its meter: ZeroDivisionError"):
        failing_open.open_meter()
    meter = LatencyMeter(Backend(name="bad-measure", description="x", device="board", meter=lambda b, o: Broken()), task, space.shape)
    with pytest.raises(HatError, match="'bad-measure' failed to measure: ValueError: the board did not answer"):
        meter.measure(space.smallest())
