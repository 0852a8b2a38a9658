"""The library's shape: sub-packages by pipeline stage, each saying what it holds; no import
cycle among fabe's modules (function-level imports included); no Gradio anywhere in fabe/;
registries refuse unknown names with the known ones; page builders stay short."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("data", "training", "cleaning", "evaluation", "defense", "runs")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The fabe modules `path` imports anywhere in it (`from fabe.x import y` counts y when y
    is a module), leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING"
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fabe"):
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
            found |= {node.module} & modules
    return found - {_module_name(path)}


def import_graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "fabe").rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def test_the_library_has_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(" -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for module in graph:
        visit(module, [])


def test_fabe_never_imports_gradio():
    for path in (ROOT / "fabe").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(name.split(".")[0] == "gradio" for name in names), path


def test_each_stage_is_a_package_that_says_what_it_holds():
    flat = sorted(p.name for p in (ROOT / "fabe").glob("*.py"))
    assert len(flat) <= 12, flat  # the foundations only; the pipeline lives in the stages
    for stage in STAGES:
        init = ROOT / "fabe" / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, stage
        for module in (ROOT / "fabe" / stage).glob("*.py"):
            if module.name != "__init__.py":
                assert module.stem in doc, f"fabe/{stage}/__init__.py does not mention {module.stem}"
                assert ast.get_docstring(ast.parse(module.read_text())), module


@pytest.mark.parametrize("registry, what", [
    ("fabe.training.losses:RANK_LOSSES", "loss type"),
    ("fabe.cleaning.cleaner:DECODINGS", "decoding"),
    ("fabe.defense.defenses:DEFENSES", "defense"),
])
def test_registries_refuse_an_unknown_name_with_the_known_ones(registry, what):
    import importlib

    module, name = registry.split(":")
    table = getattr(importlib.import_module(module), name)
    with pytest.raises(ValueError) as info:
        table["nope"]
    assert str(info.value) == f"Unknown {what}: nope. Should be one of {list(table)}"
    assert all(table[key] is not None for key in table)


def test_page_builders_stay_short():
    too_long = []
    for path in [*(ROOT / "pages").glob("*.py"), ROOT / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 60:
                too_long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert too_long == []
