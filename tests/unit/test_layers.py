"""The layers ARCHITECTURE.md draws, read from the code's own import statements (every `import`,
also those inside functions): `store/` is the ground floor and imports nothing above it; the pure
layers use only the vocabulary and the error types from below; `cli/` is the composition root that
nothing imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("store", "engine", "scheduler", "workers", "observability", "api", "cli")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """The Ordo modules `path` imports (absolute imports; Ordo uses no relative ones)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: a relative import"
            # `from scheduler import task_document` imports scheduler.task_document
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def _allowed(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _violations(files: list[Path], allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} imports {name}"
        for path in files
        for name in _imports(path)
        if not _allowed(name, allowed)
    )


# What each layer may import of Ordo (beyond itself).
LAYERS: dict[str, tuple[str, ...]] = {
    # The ground floor: settings, database, SQL, errors, vocabulary, cursors, each concern's statements.
    "store": ("store",),
    # Expansion is pure: the schedule kinds and limits, and the error types.
    "scheduler/expand": ("scheduler.expand", "store.domain", "store.errors"),
    # Tools may read and write Ordo's own tables through the store (ctx.db), and use expansion.
    "engine": ("engine", "scheduler.expand", "store"),
    "observability": ("observability", "store"),
    "workers": ("workers", "engine", "observability", "store"),
    "scheduler": ("scheduler", "engine", "observability", "store"),
    "api": ("api", "engine", "observability", "scheduler.expand", "scheduler.task_document", "store"),
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_layer_imports_only_what_is_below_it(layer: str) -> None:
    files = _modules(layer)
    assert files, layer
    assert _violations(files, LAYERS[layer]) == []


def test_the_pipeline_core_uses_only_the_error_types_and_vocabulary_from_below() -> None:
    """engine/*.py (not its tools) runs a pipeline without a database: `run_pipeline` gets `now` and
    a context; only tools that say so (engine/tools/plant.py, webhooks.py) touch the store."""
    core = sorted((ROOT / "engine").glob("*.py"))
    assert _violations(core, ("engine", "store.errors", "store.domain")) == []


def test_nothing_imports_the_cli() -> None:
    """cli/ is the composition root: it wires the API, the scheduler and the workers together."""
    others = [path for package in PACKAGES if package != "cli" for path in _modules(package)]
    assert [f"{p.relative_to(ROOT)}" for p in others if any(_allowed(n, ("cli",)) for n in _imports(p))] == []


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The reader finds imports anywhere in a module, including inside a function."""
    module = tmp_path / "m.py"
    module.write_text("import json\n\ndef late():\n    from engine.pipeline import compile_pipeline\n")
    assert _imports(module) == {"engine.pipeline.compile_pipeline"}
    assert _violations([module], LAYERS["store"]) != []
