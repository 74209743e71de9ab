"""The house plan (docs/ARCHITECTURE.md), checked on the imports themselves.

Every module of hat_cli and of the built-in plugins is parsed (no module is imported), every import of the
project's own modules is found, function-local ones included, and each module gets the layer of its package:

    0 core   1 tasks   2 model, data   2.5 export   3 training, latency, evaluation   4 search, zoo, plugins
    5 resolve, demo   6 cli

A module may import its own package and lower layers only; packages of one layer do not import each other
(resolve and the CLI are what connect siblings); there is no import cycle; a function-local import of the
project's own modules says why in a comment mentioning "lazily" (start-up time, or torch kept out of
modules that resolve words).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = {
    # export (the model as ONNX graphs) sits between the model and latency, whose onnxruntime meter uses it.
    "core": 0, "tasks": 1, "model": 2, "data": 2, "export": 2.5, "training": 3, "latency": 3, "evaluation": 3,
    "search": 4, "zoo": 4, "hat_plugins": 4, "resolve": 5, "demo": 5, "cli": 6,
}
PLUGIN_API = "hat_cli.latency.backends"


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    local: bool  # inside a function or class body rather than at module level
    commented: bool  # a comment on the line or just above it says "lazily"


def module_files() -> dict[str, Path]:
    found = {}
    for folder, package in ((REPO / "hat_cli", "hat_cli"), (REPO / "plugins", "hat_plugins")):
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "hat_plugins" else parts[1] if len(parts) > 1 else ""


def own_target(name: str) -> str | None:
    """The project module an imported name lives in (a submodule when the name is one), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    top = {id(node) for node in ast.iter_child_nodes(tree)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def commented(lineno: int) -> bool:
        # The import's own line, and the run of comment/import lines just above it.
        i = lineno - 1
        if "lazily" in lines[i].lower():
            return True
        while i > 0 and lines[i - 1].strip().startswith(("#", "from ", "import ")):
            i -= 1
            if lines[i].strip().startswith("#") and "lazily" in lines[i].lower():
                return True
        return False

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in {own_target(n) for n in names} - {None, module, "hat_cli"}:
            found.append(Import(module, target, node.lineno, id(node) not in top, commented(node.lineno)))
    return found


IMPORTS = [imp for module, path in MODULES.items() for imp in imports_of(module, path)]


def test_every_module_has_a_layer():
    assert {package_of(m) for m in MODULES} - {""} <= set(LAYERS)


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in IMPORTS:
        graph[imp.source].add(imp.target)
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_import_reaches_up_a_layer_or_across_to_a_sibling_package():
    wrong = []
    for imp in IMPORTS:
        source, target = package_of(imp.source), package_of(imp.target)
        if not source or not target or source == target:
            continue
        if LAYERS[target] > LAYERS[source]:
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}, a higher layer")
        elif LAYERS[target] == LAYERS[source]:
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}, a sibling package of its layer")
    assert not wrong, "\n".join(wrong)


def test_plugins_use_only_the_plugin_api():
    used = {imp.target for imp in IMPORTS if imp.source.startswith("hat_plugins.") and imp.target.startswith("hat_cli")}
    assert used <= {PLUGIN_API}
    example = REPO / "examples" / "hat-hw-example" / "hat_hw_example" / "__init__.py"
    assert f"from {PLUGIN_API} import" in example.read_text()


def test_function_local_imports_say_why():
    silent = [f"{imp.source}:{imp.line} ({imp.target})" for imp in IMPORTS if imp.local and not imp.commented]
    assert not silent, "function-local imports without a 'lazily' comment:\n" + "\n".join(silent)


def test_every_package_says_what_it_owns():
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module.count(".") >= 1:
            docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            assert docstring and len(docstring) > 40, f"{path} needs a docstring saying what the package owns"


def test_command_line_and_packages_start_without_torch():
    """`hat CMD` imports the Typer app and every command module; none of them, and no package's
    __init__, may import torch at module level (start-up time). The modules that resolve command-line words
    stay torch-free too: `hat zoo list` and `hat hw list` use them."""
    packages = sorted(m for m, p in MODULES.items() if p.name == "__init__.py" and m.startswith("hat_cli"))
    light = ["hat_cli.cli.app", "hat_cli.cli.entry", "hat_cli.resolve", "hat_cli.zoo.catalogue", "hat_cli.latency.backends"]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in light + packages) + \
        "print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
