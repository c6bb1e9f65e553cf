"""The package layout has no import cycles, and ``models`` never imports ``weights`` (the model knows no file format).

Every import counts, including those inside functions: a lazy import only hides a cycle. Importing
``vitlab.a.b`` also runs ``vitlab/a/__init__.py``, so that package is an edge too (except the module's
own packages, which are already being imported when it runs).
"""
import ast
from pathlib import Path

import vitlab

ROOT = Path(vitlab.__file__).parent


def _module_name(path: Path) -> str:
    parts = ("vitlab",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """vitlab modules that ``path`` imports (resolved relative imports, parent packages included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule sub when there is one
            targets = [base] + [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        for t in targets:
            parts = t.split(".")
            found |= {".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in known}
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    return found - ancestors  # its own packages are already importing when the module runs


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(files)
    return {name: _imports(path, name, known) for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_graph_sees_known_edges():  # the parser must find real imports, or the tests below prove nothing
    g = import_graph()
    assert "vitlab.models.vit" in g["vitlab.models.registry"]
    assert "vitlab.models.hybrid" in g["vitlab.models.vit"]
    assert {"vitlab.models", "vitlab.models.vit"} <= g["vitlab.weights.load"]  # parent package counts
    assert "vitlab.weights.runs" in g["vitlab.train.checkpoint"]


def test_no_import_cycles():
    assert _find_cycle(import_graph()) is None


def test_find_cycle_reports_one():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_models_never_import_weights():
    g = import_graph()
    assert not [(n, d) for n, ds in g.items() for d in ds if n.startswith("vitlab.models") and d.startswith("vitlab.weights")]


# A package may import its own modules and packages of a lower rank (README, "Layout").
RANK = {"utils": 0, "errors": 0, "models": 1, "data": 1, "weights": 2, "api": 3, "deploy": 3, "evaluate": 4, "analysis": 4,
        "train": 5, "serve": 6, "experiments": 6, "cli": 7, "__main__": 8}


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "vitlab"


def test_imports_go_down_the_layers():
    g = import_graph()
    assert {_package(n) for n in g} - {"vitlab"} == set(RANK)  # a new package needs a rank
    for name, deps in g.items():
        pkg = _package(name)
        if pkg == "vitlab":
            continue  # the public API re-exports from everywhere
        up = sorted(d for d in deps if _package(d) != pkg and (_package(d) == "vitlab" or RANK[_package(d)] >= RANK[pkg]))
        assert not up, f"{name} imports {up}, which sit at or above {pkg}"
