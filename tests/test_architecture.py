"""The dependency direction the docs promise: the API process never imports the model stack.

Each rule is checked in a fresh interpreter, and interpreters are few: each one that imports torch and diffusers costs
~10 s. The API side gets one of its own. The model side is imported in stages in one more, recording `sys.modules`
after each stage. That is as sound as one interpreter per rule: a module once imported stays in `sys.modules`, so a
module absent after a stage was imported neither by it nor before it; and what precedes a stage is only what its rule
allows (run_format and the task suite, leaves, before model loading; model loading, which the probe rule imports itself,
before the probe).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parents[1] / "backend"


def module_name(path: Path) -> str:
    """backend/stepscope/tasks/core.py → stepscope.tasks.core (a package's __init__.py → the package)."""
    return ".".join(path.relative_to(BACKEND).with_suffix("").parts).removesuffix(".__init__")


TASK_MODULES = sorted(module_name(p) for p in (BACKEND / "stepscope" / "tasks").rglob("*.py"))
# The model side's stages, in import order: each entry is (stage name, modules it imports).
MODEL_SIDE_STAGES = [
    ("run_format", ["stepscope.run_format"]),
    ("tasks", TASK_MODULES),
    ("model_loading", ["stepscope.models.loading"]),
    ("probe_engine", ["stepscope.probe", "stepscope.models.loading"]),
]


def modules_after_each_stage(stages: list[tuple[str, list[str]]]) -> dict[str, list[str]]:
    """Import the stages in order in a fresh interpreter; the names in `sys.modules` after each stage."""
    code = (
        "import importlib, json, sys\n"
        f"stages = {stages!r}\n"
        "seen = {}\n"
        "for name, modules in stages:\n"
        "    for module in modules:\n"
        "        importlib.import_module(module)\n"
        "    seen[name] = sorted(sys.modules)\n"
        "print(json.dumps(seen))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # the last line: imports may print before it


@pytest.fixture(scope="module")
def model_side() -> dict[str, list[str]]:
    return modules_after_each_stage(MODEL_SIDE_STAGES)


def test_the_api_does_not_import_torch_or_diffusers():
    # Its own interpreter: the API side imports fastapi and redis, which the model side's rules forbid.
    api = ["stepscope.api.app", "stepscope.client", "stepscope.jobs", "stepscope.events"]
    loaded = modules_after_each_stage([("api", api)])["api"]
    assert set(api) <= set(loaded)  # the check saw the modules it is about
    heavy = [m for m in ("torch", "diffusers", "transformers") if m in loaded]
    assert not heavy, heavy


def test_the_run_format_is_a_leaf(model_side):
    """Every side reads and writes run directories through run_format: it imports nothing of theirs."""
    loaded = model_side["run_format"]
    assert "stepscope.run_format" in loaded
    mods = [m for m in loaded if m.startswith("stepscope.") and m != "stepscope.run_format"]
    mods += [m for m in ("torch", "numpy", "fastapi", "redis") if m in loaded]
    assert not mods, mods


def test_model_loading_does_not_import_the_preview_fitting(model_side):
    loaded = model_side["model_loading"]
    assert "stepscope.models.loading" in loaded and "torch" in loaded  # the stage did import the model stack
    assert "stepscope.preview" not in loaded


def test_the_probe_engine_does_not_import_the_service(model_side):
    loaded = model_side["probe_engine"]
    assert {"stepscope.probe", "stepscope.models.loading"} <= set(loaded)
    service = [m for m in ("fastapi", "rq", "redis", "stepscope.api", "stepscope.worker") if m in loaded]
    assert not service, service


TASK_SUITE_MAY_IMPORT = ("stepscope.stats",)  # intervals, numpy alone


def test_the_task_suite_is_a_leaf(model_side):
    """tasks/ (instances, scorers, curves) imports nothing else of stepscope but `stats` (intervals, numpy alone) and
    no torch: `stepscope bench` and `reproduce` sit above it, so a family or scorer is written and tested with numpy."""
    loaded = model_side["tasks"]
    assert set(TASK_MODULES) <= set(loaded)
    others = [m for m in loaded if m.startswith("stepscope.") and not m.startswith("stepscope.tasks")]
    # run_format: imported by the stage before.
    others = [m for m in others if m not in ("stepscope.run_format", *TASK_SUITE_MAY_IMPORT)]
    heavy = [m for m in ("torch", "diffusers", "fastapi", "redis") if m in loaded]
    assert not others and not heavy, others + heavy
    # Inside functions too, where loading the module does not reach: no import of anything else of stepscope, not
    # even run-directory readers (a stored bench is read by stepscope.bench, which hands the suite its videos).
    for path in (BACKEND / "stepscope" / "tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import (name stepscope.tasks... in full)"
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                inside = name == "stepscope.tasks" or name.startswith("stepscope.tasks.")
                if name.partition(".")[0] == "stepscope" and not inside and name not in TASK_SUITE_MAY_IMPORT:
                    raise AssertionError(f"{path.name} imports {name}")


def family_tables(source: str, families: set[str]) -> list[int]:
    """Lines of `source` that keep something per family by name: a dict literal or `dict(...)` with two or more
    family names as keys, or a tuple, list or set literal of two or more family names. (One name alone is no
    table: "trajectory" is also a run kind, and an analysis may be about mazes only.)"""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            named = node.keys
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            named = node.elts
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            named = [ast.Constant(k.arg) for k in node.keywords]
        else:
            continue
        hits = [k for k in named if isinstance(k, ast.Constant) and k.value in families]
        if len(hits) >= 2:
            lines.append(node.lineno)
    return lines


def test_family_facts_are_kept_by_the_families_alone():
    """A family's facts (its prompt, the parameter that carries its answer, its foreground colours: tasks.core's
    FAMILY_FACTS) live on its class in tasks/; training and reproduce read them there (`get_family(name)`), and every
    caller takes the list of families from `family_names()`. A table keyed by family names anywhere else in backend/
    or benchmarks/ would be a second owner, and a family added later would be missing from it."""
    from stepscope.tasks import family_names

    families = set(family_names())
    assert family_tables('X = {"maze": "goal", "pattern": "turns"}\nY = ("maze", "trajectory")', families) == [1, 2]
    suite = BACKEND / "stepscope" / "tasks"
    sources = [p for p in (BACKEND / "stepscope").rglob("*.py") if not p.is_relative_to(suite)]
    sources += sorted((BACKEND.parent / "benchmarks").rglob("*.py"))
    found = [f"{p.relative_to(BACKEND.parent)}:{n}" for p in sources for n in family_tables(p.read_text(), families)]
    assert not found, found


def module_imports() -> dict[str, set[str]]:
    """stepscope module → the stepscope modules it imports when it is imported (module level, outside
    `if TYPE_CHECKING:`; imports inside functions run later and are not part of loading it)."""
    paths = {module_name(path): path for path in (BACKEND / "stepscope").rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    deps |= {owner(a.name) for a in sub.names if a.name.startswith("stepscope")}
                elif isinstance(sub, ast.ImportFrom):
                    base = sub.module or ""
                    if sub.level:
                        parent = package.rsplit(".", sub.level - 1)[0] if sub.level > 1 else package
                        base = f"{parent}.{base}" if base else parent
                    if base.startswith("stepscope"):
                        deps |= {owner(f"{base}.{a.name}") for a in sub.names}
        graph[name] = deps - {name, None}
    return graph


def test_no_import_circle():
    graph = module_imports()
    assert graph["stepscope.bench"] and "stepscope.tasks.core" in graph["stepscope.bench"]  # the graph sees imports
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import circle: " + " → ".join([*path[path.index(dep) :], dep]))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
