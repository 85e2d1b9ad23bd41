"""The tree is the map: each package imports only what its role allows, nothing imports in a circle, and the
unit tests mirror the modules (as mitmproxy's `test/filename_matching.py` holds its own tests to)."""

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ADDON = ROOT / "addon"
UNIT = ROOT / "tests" / "unit"

# What each part of the addon may import of the others (by first name under `addon`), in the order a request
# takes them outward: the pure wire formats first, the mitmproxy adapters last.
ALLOWED: dict[str, set[str]] = {
    "wire": set(),
    "ids": set(),
    "providers": {"wire", "config"},
    "config": {"providers"},
    "audit": {"ids"},
    "upstream": {"config"},
    "policy": {"config", "providers", "wire", "audit", "engine.ports"},
    "engine": {"wire", "policy", "audit", "providers", "upstream", "config", "ids"},
    "tools": {"config", "engine.ports"},
    "observe": {"engine", "audit", "policy", "providers", "config"},
    "fleet": {"policy", "audit", "ids", "config"},
    "gateway": {"engine", "observe", "policy", "providers", "audit", "config", "upstream", "tools", "fleet"},
    "inprocess": {"gateway", "engine", "upstream", "audit", "config", "tools"},
    "mitm": {"gateway", "engine", "observe", "policy", "providers", "audit", "config", "upstream", "tools"},
    "cli": {"audit", "config"},
    "web": {"audit", "cli", "config", "policy"},  # the CLI's sources; `aibridge web` imports it in its command only
    "aibridge": {"mitm"},
}
# Third-party packages only one part of the addon may use.
CONFINED: dict[str, set[str]] = {
    "mitmproxy": {"mitm"},
    "duckdb": {"audit"},
    "psycopg": {"audit", "fleet"},
    "psycopg_pool": {"audit", "fleet"},
    "mcp": {"tools"},
    "mcp_types": {"tools"},
    "httptools": {"upstream", "mitm"},
    "brotli": {"upstream"},
    "zstandard": {"upstream"},
    "click": {"cli", "web"},
    "starlette": {"web"},
    "jinja2": {"web"},
    "uvicorn": {"web"},
    "rich": {"cli"},
    "opentelemetry": {"observe"},
    "prometheus_client": {"observe"},
    "botocore": {"providers"},
    "detect_secrets": {"policy"},
}
STDLIB = set(sys.stdlib_module_names)

# Modules without a unit test module of their own, and why.
UNTESTED: dict[str, str] = {
    "aibridge": "the entry script: every end-to-end test loads it",
    "inprocess": "exercised with the real SDKs in tests/e2e/test_inprocess_e2e.py",
    "engine/ports": "interfaces and value types only",
    "policy": "the `Refusal` value type: every policy's tests build and read it",
    "engine/job": "data types; the engine's tests drive them",
    "engine/relay": "through the engine: engine/test_core.py and engine/test_loop.py",
    "engine/record": "through the engine: every engine test reads the events it builds",
    "mitm/certs": "in tests/e2e/test_startup_e2e.py, where mitmproxy writes the CA",
    "observe/dumps": "with the other observers in observe/test_observe.py",
    "observe/jsonlog": "with the other observers in observe/test_observe.py",
    "observe/metrics": "with the other observers in observe/test_observe.py",
    "observe/tracing": "with the other observers in observe/test_observe.py",
    "providers/anthropic": "its facts, in providers/test_providers.py",
    "providers/openai": "its facts, in providers/test_providers.py",
    "providers/azure": "its facts, in providers/test_providers.py",
    "providers/chatgpt": "its facts, in providers/test_providers.py",
    "providers/copilot": "its facts, in providers/test_providers.py",
    "providers/vertex": "its facts, in providers/test_providers.py",
    "providers/foundry": "its facts, in providers/test_providers.py",
    "providers/bedrock": "its facts, in providers/test_providers.py",
    "providers/mantle": "its facts, in providers/test_providers.py",
    "providers/gemini": "its facts, in providers/test_providers.py",
    "providers/code_assist": "its facts, in providers/test_providers.py",
    "providers/base": "in providers/test_providers.py",
    "audit/endpoint": "the live query endpoint, in tests/e2e/test_cli_live_e2e.py",
    "cli/render": "through the commands in cli/test_main.py",
    "cli/source": "through the commands in cli/test_main.py",
}


def modules() -> Iterator[tuple[str, Path]]:
    """Every addon module by its path under addon/ without `.py`; a package's `__init__` by the package."""
    for path in sorted(ADDON.rglob("*.py")):
        rel = path.relative_to(ADDON).with_suffix("")
        name = rel.parent.as_posix() if rel.name == "__init__" else rel.as_posix()
        if name != ".":
            yield name, path


def runtime_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) of each import that runs when the module is imported: module level, not under
    `if TYPE_CHECKING:` and not inside functions (which import when called)."""

    def walk(body: list[ast.stmt]) -> Iterator[tuple[str, int]]:
        for node in body:
            if isinstance(node, ast.Import):
                yield from ((alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:  # `from addon import upstream` imports the module addon.upstream
                    submodule = f"{node.module}.{alias.name}"
                    yield (submodule if submodule.removeprefix("addon.") in KNOWN else node.module), node.lineno
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for part in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    yield from walk(part)

    yield from walk(ast.parse(path.read_text()).body)


def addon_modules() -> set[str]:
    return {name.replace("/", ".") for name, _ in modules()}


KNOWN = addon_modules()


def part(module: str) -> str:
    """The part of the addon a dotted module under `addon.` belongs to: `engine.ports`, `engine`, `wire`..."""
    return module.split(".", 1)[0]


def test_no_relative_imports() -> None:
    relative = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for _, path in modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == []


def test_each_part_imports_only_what_its_role_allows() -> None:
    known = addon_modules()
    wrong = []
    for name, path in modules():
        mine = part(name.replace("/", "."))
        for module, line in runtime_imports(path):
            top = module.split(".", 1)[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if top == "addon" and module != "addon":
                target = module.removeprefix("addon.")
                if target not in known:
                    continue  # a name imported from a module, listed with its module already
                other = part(target)
                if other == mine:
                    continue
                allowed = ALLOWED[mine]
                if other not in allowed and target not in allowed:
                    wrong.append(where)
            elif top in CONFINED and mine not in CONFINED[top]:
                wrong.append(where)
            elif mine == "wire" and top not in STDLIB and top != "addon":
                wrong.append(f"{where} (wire/ is the standard library only)")
    assert wrong == []


def test_nothing_imports_in_a_circle() -> None:
    known = addon_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules():
        me = name.replace("/", ".")
        deps = {m.removeprefix("addon.") for m, _ in runtime_imports(path) if m.startswith("addon.")}
        graph[me] = {d for d in deps if d in known and d != me}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*trail[trail.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*trail, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_rules_name_every_part() -> None:
    parts = {part(name.replace("/", ".")) for name, _ in modules()}
    assert parts == set(ALLOWED)


def test_unit_tests_mirror_the_modules() -> None:
    """tests/unit/<package>/test_<module>.py for addon/<package>/<module>.py; a package's own code (its
    `__init__`) is tested in tests/unit/<package>/test_<package>.py."""
    expected = {}
    for name, _ in modules():
        if name.endswith("__init__"):
            continue
        if (ADDON / name).is_dir():  # a package: its __init__
            leaf = name.rsplit("/", 1)[-1]
            expected[f"{name}/test_{leaf}.py"] = name
        else:
            folder, _, leaf = name.rpartition("/")
            expected[f"{folder + '/' if folder else ''}test_{leaf}.py"] = name
    tests = {p.relative_to(UNIT).as_posix() for p in UNIT.rglob("test_*.py")}
    assert sorted(tests - set(expected)) == [], "a unit test module for no module of the addon"
    untested = {name for test, name in expected.items() if test not in tests}
    packages_without_code = {name for name, path in modules() if path.name == "__init__.py" and not _has_code(path)}
    assert sorted(untested - set(UNTESTED) - packages_without_code) == [], "a module without its unit tests"
    assert sorted(set(UNTESTED) & {expected[t] for t in tests}) == [], "listed as untested, but has tests"


def _has_code(path: Path) -> bool:
    """More than a docstring and re-exports."""
    body = ast.parse(path.read_text()).body
    return any(
        not isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        and not (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets))
        for node in body
    )


@pytest.mark.parametrize("name", sorted(UNTESTED))
def test_each_untested_module_exists(name: str) -> None:
    assert (ADDON / f"{name}.py").exists() or (ADDON / name / "__init__.py").exists()
