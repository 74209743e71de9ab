"""Broken hardware plugins of every kind are named and skipped; the rest of hat keeps working."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from _hat import assert_refused, hat_env, run_hat
from conftest import TINY

BUILTINS = {"raspberrypi", "xeon", "titanxp", "cpu"}

HOOK = textwrap.dedent(
    """
    from hat_cli.latency.backends import Backend, MeasurementProtocol, hookimpl

    @hookimpl
    def register_hardware(register):
        {body}
    """
)

PLUGINS = {
    "exit-at-import": "import sys\nsys.exit(3)\n",
    "exit-in-hook": HOOK.format(body="raise SystemExit('bye')"),
    "protocol-none": HOOK.format(body="register(Backend(name='badhw', description='x', protocol=None))"),
    "negative-threads": HOOK.format(body="register(Backend(name='badhw', description='x', threads=-4))"),
    "nan-lat-norm": HOOK.format(body="register(Backend(name='badhw', description='x', lat_norm=float('nan')))"),
    "not-a-backend": HOOK.format(body="register({'name': 'badhw'})"),
    "missing-module": None,
    "syntax-error": "def broken(:\n",
}


def plugin_site(tmp_path: Path, kind: str) -> Path:
    site = tmp_path / "site"
    dist_info = site / "hat_bad_plugin-0.0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hat-bad-plugin\nVersion: 0.0.1\n")
    module = "hat_bad_plugin" if PLUGINS[kind] is not None else "hat_no_such_module"
    (dist_info / "entry_points.txt").write_text(f"[hat]\nbadhw = {module}\n")
    if PLUGINS[kind] is not None:
        (site / "hat_bad_plugin.py").write_text(PLUGINS[kind])
    return site


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_a_broken_plugin_is_named_and_skipped(tmp_path, kind):
    site = plugin_site(tmp_path, kind)
    env = hat_env(PYTHONPATH=str(site))
    env.pop("HAT_PLUGINS", None)
    result = run_hat("hw", "list", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILTINS <= set(rows)
    assert "error" in rows["badhw"] and "badhw" in result.stderr
    # a command naming the broken backend gets one sentence that says why it is missing
    result = run_hat("collect-latency", "--hw", "badhw", "--task", "demo", "--samples", "1", "--csv", tmp_path / "c.csv", *TINY,
                     cwd=tmp_path, env=env)
    assert_refused(result, "badhw")
    assert not (tmp_path / "c.csv").exists()
