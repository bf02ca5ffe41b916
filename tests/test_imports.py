"""The engine's import structure: ``kore_bench`` imports no method module (methods plug in
through the registry, which only discovers the built-in package), and its module-level imports
form no cycle (lazy function-level imports may close a loop; import time must not)."""
from __future__ import annotations

import ast
from pathlib import Path

import kore_bench

PACKAGE = Path(kore_bench.__file__).parent
ROOT = PACKAGE.parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, file: Path, known: dict[str, Path]):
    """(target module, line, module-level?) of every import in ``file``."""
    package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]

    def targets(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:  # relative: the package ``level - 1`` steps up, then the named module
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module
        subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
        return subs if len(subs) == len(node.names) else [base, *subs]

    def walk(node, eager: bool):
        for child in ast.iter_child_nodes(node):
            lazy = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for t in targets(child):
                    yield t, child.lineno, eager
            yield from walk(child, eager and not lazy)

    yield from walk(ast.parse(file.read_text()), True)


def _graph():
    known = _modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    every = []
    for name, file in known.items():
        for target, line, eager in _imports(name, file, known):
            every.append((name, f"{file.relative_to(ROOT)}:{line}", target))
            while target and target not in known:
                target = target.rpartition(".")[0]
            if eager and target and target != name and not name.startswith(target + "."):
                edges[name].add(target)
    return edges, every


def test_the_engine_imports_no_method_module():
    _, every = _graph()
    offending = [(where, t) for name, where, t in every  # the registry may discover the package itself
                 if t.startswith(("methods.", "kore_bench.methods."))
                 or (t in ("methods", "kore_bench.methods") and name != "kore_bench.registry")]
    assert not offending, f"the engine imports a method module: {offending}"


def test_module_level_imports_have_no_cycle():
    edges, _ = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str):
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_runner_reads_tuned_settings_from_a_leaf():
    _, every = _graph()
    runner_imports = {t for name, _, t in every if name == "kore_bench.runner"}
    assert not any(t.startswith("kore_bench.studies") and t != "kore_bench.studies.tuned" for t in runner_imports)
    tuned_imports = {t for name, _, t in every if name == "kore_bench.studies.tuned"}
    assert tuned_imports <= {"__future__", "pathlib", "typing", "kore_bench.errors", "kore_bench.store"}, tuned_imports
