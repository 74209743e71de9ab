"""Broken hardware plugins of every kind are named and skipped; the rest of hat keeps working.

One fake distribution installs a plugin per way of breaking (each its own entry point and module), so one
`hat hw list` shows that every one of them is named with its reason while the built-ins still load.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

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

# entry-point name -> module source (None: the entry point names a module that does not exist)
PLUGINS = {
    "exit_at_import": "import sys\nsys.exit(3)\n",
    "exit_in_hook": HOOK.format(body="raise SystemExit('bye')"),
    "raise_at_import": "raise RuntimeError('broken on purpose')\n",
    "protocol_none": HOOK.format(body="register(Backend(name='protocol_none', description='x', protocol=None))"),
    "negative_threads": HOOK.format(body="register(Backend(name='negative_threads', description='x', threads=-4))"),
    "nan_lat_norm": HOOK.format(body="register(Backend(name='nan_lat_norm', description='x', lat_norm=float('nan')))"),
    "not_a_backend": HOOK.format(body="register({'name': 'not_a_backend'})"),
    "meter_not_callable": HOOK.format(body="register(Backend(name='meter_not_callable', description='x', meter=42))"),
    "missing_module": None,
    "syntax_error": "def broken(:\n",
}


def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    dist_info = site / "hat_bad_plugins-0.0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: hat-bad-plugins\nVersion: 0.0.1\n")
    lines = ["[hat]"]
    for name, source in PLUGINS.items():
        module = f"hat_bad_{name}" if source is not None else "hat_no_such_module"
        lines.append(f"{name} = {module}")
        if source is not None:
            (site / f"{module}.py").write_text(source)
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def test_every_kind_of_broken_plugin_is_named_and_skipped(tmp_path):
    env = hat_env(PYTHONPATH=str(plugin_site(tmp_path)))
    env.pop("HAT_PLUGINS", None)
    result = run_hat("hw", "list", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert BUILTINS <= set(rows)
    for name in PLUGINS:
        assert "error" in rows.get(name, {}), f"{name} was not reported: {rows.get(name)}"
        assert f"'{name}'" in result.stderr  # the warning names it
    assert "sys.exit(3)" in rows["exit_at_import"]["error"]
    assert "protocol" in rows["protocol_none"]["error"] and "threads" in rows["negative_threads"]["error"]
    # a command naming a broken backend gets one sentence that says why it is missing, and writes nothing
    result = run_hat("collect-latency", "--hw", "negative_threads", "--task", "demo", "--samples", "1", "--csv", tmp_path / "c.csv",
                     *TINY, cwd=tmp_path, env=env)
    assert_refused(result, "negative_threads", "failed to load")
    assert not (tmp_path / "c.csv").exists()
