"""The tree shows the floors, and imports only run downward.

Floors, lowest first (``docs/architecture.md``): ``core`` (numpy), ``data``
(sample tables), ``record`` (the run folder and its configuration), ``strategies``
(round plug-ins), ``views`` (pages), ``engine`` (torch), ``run`` (steps and loops),
``integrations``, ``cli``. A module may import its own floor and the floors
below it, lazily or not, and for its type hints too (``TYPE_CHECKING`` imports are
arrows like any other); only the floors from ``engine`` up may import torch.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hardmine"
FLOORS = ("core", "data", "record", "strategies", "views", "engine", "run", "integrations", "cli")
TORCH_FREE = FLOORS[: FLOORS.index("engine")]
TORCH = ("torch", "torchvision", "timm", "lightning", "fastai")


def floor_of(module: str) -> str | None:
    """``hardmine.core.mining`` -> ``core``; None for the package's entry files."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOORS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, module: str | None = None, type_hints: bool = True) -> list[tuple[int, str]]:
    """Every module ``path`` (the module ``module``, by default its name in the package) imports, at any depth
    (lazy imports too); those under ``if TYPE_CHECKING:`` too unless ``type_hints`` is False (they never run, so
    they make no import cycle, but they are arrows between floors)."""
    tree = ast.parse(path.read_text())
    skipped = set() if type_hints else {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                                        and getattr(block.test, "id", "") == "TYPE_CHECKING"
                                        for node in ast.walk(block)}  # fmt: skip
    package = (module or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.append((node.lineno, module))
            # `from hardmine.core import ranks` imports hardmine.core.ranks
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names
                      if (PACKAGE.parent / f"{module}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()]
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_module_stands_on_a_floor():
    loose = [module_name(p) for p in modules() if floor_of(module_name(p)) is None]
    assert sorted(loose) == ["hardmine", "hardmine.__main__"]  # the lazy public names and `python -m hardmine`


def test_imports_only_run_down():
    upward = []
    for path in modules():
        me = floor_of(module_name(path))
        if me is None:
            continue
        for line, target in imports_of(path):
            top = target.split(".")[0]
            if top in TORCH and me in TORCH_FREE:
                upward.append(f"{module_name(path)}:{line} imports {target} (floor {me} is torch-free)")
            other = floor_of(target) if top == "hardmine" else None
            if other is not None and FLOORS.index(other) > FLOORS.index(me):
                upward.append(f"{module_name(path)}:{line} imports {target} ({me} below {other})")
    assert not upward, "\n".join(upward)


def test_the_floor_rule_test_sees_lazy_and_relative_imports(tmp_path):
    # the checker itself must catch what it guards against, or the test above cannot fail
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from hardmine.run import steps\n    import torch\n    from ..engine import train\n"
                     "if TYPE_CHECKING:\n    from hardmine.views import gallery\n")
    found = {target for _, target in imports_of(probe, "hardmine.core.probe")}
    assert {"hardmine.run", "hardmine.run.steps", "torch", "hardmine.engine", "hardmine.engine.train",
            "hardmine.views.gallery"} <= found  # fmt: skip


@pytest.mark.parametrize("floor", TORCH_FREE)
def test_torch_free_floors_import_no_torch(floor):
    names = [module_name(p) for p in modules() if floor_of(module_name(p)) == floor]
    code = "import sys\n" + "".join(f"import {name}\n" for name in names) + \
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{floor} pulled in torch"


def test_the_cli_starts_without_scikit_learn_scipy_or_torch():
    """``--help`` and every command's start pay for none of them (scikit-learn alone took 1.2 s)."""
    code = ("import sys\nimport hardmine.cli\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'torch', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (lazy imports too, ``TYPE_CHECKING`` blocks not)."""
    names = {module_name(p): p for p in modules()}
    graph = {}
    for name, path in names.items():
        targets = set()
        for _, target in imports_of(path, type_hints=False):
            while target and target not in names:  # `from hardmine.core.mining import mine` imports the package
                target = target.rpartition(".")[0]
            if target and target not in (name, "hardmine"):
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    """No import cycle anywhere, lazy imports included (the engine's runtime -> scoring -> train -> runtime was
    one: the out-of-fold networks moved to engine/folds.py)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the checker sees one
    assert cycles(import_graph()) == []


def test_no_module_imports_a_private_name_of_another():
    """A name shared across modules is public (``thumbnail``, ``script_json``, ``train_epoch``); a leading
    underscore means "this module only", in the package and in its tests."""
    found = []
    for path in [*modules(), *sorted(Path(__file__).parent.glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hardmine"):
                found += [f"{path.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "\n".join(found)

