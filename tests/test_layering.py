"""The package's layers (docs/architecture.md): a module imports only its own layer or lower ones."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1] / "frugalign"

# lowest first; a module belongs to the first layer with a matching name or package prefix
LAYERS = [
    ("foundation", ["errors", "faults", "records", "formats", "config", "weights", "data", "metrics", "paired", "precision",
                    "pipeline", "plots"]),
    ("models and scoring", ["models", "chat", "logprobs", "losses", "generate", "backends", "distributed", "packing",
                            "checkpoints", "scoring"]),
    ("methods", ["selection", "annotate", "labeling", "goldjudge", "evaluate"]),
    ("training", ["train", "spa", "validation"]),
    ("recipes", ["recipe", "study", "study_summary", "report"]),
    ("interface", ["commands", "cli", "__main__", ""]),
]


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def layer_of(name: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if name == m or (m and name.startswith(m + ".")):
                return i
    raise AssertionError(f"module frugalign.{name} belongs to no layer: add it to LAYERS and docs/architecture.md")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """frugalign modules imported anywhere in the file (function-level imports count too)."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = [p for p in pkg.split(".") if p]
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(["frugalign", *parts] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            if t.startswith("frugalign."):  # `from . import x` names x, not the package itself
                short = t[len("frugalign."):]
                if short in known and short != name:
                    out.add(short)
    return out


def test_every_module_has_a_layer_and_imports_only_downwards():
    mods = modules()
    upward = []
    for name, path in mods.items():
        mine = layer_of(name)
        for dep in imports_of(name, path, set(mods)):
            if layer_of(dep) > mine:
                upward.append(f"frugalign.{name} ({LAYERS[mine][0]}) imports frugalign.{dep} "
                              f"({LAYERS[layer_of(dep)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_nothing_outside_commands_imports_commands_and_there_are_no_cycles():
    mods = modules()
    graph = {n: imports_of(n, p, set(mods)) for n, p in mods.items()}
    outside = [n for n, deps in graph.items() if n and not n.startswith("commands") and n not in ("cli", "__main__")
               and any(d == "commands" or d.startswith("commands.") for d in deps)]
    assert outside == []
    # a package __init__ may re-export its own submodules; any other cycle is a defect
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for d in graph[n]:
            if n and d.startswith(n + "."):  # __init__ re-exporting its submodule
                continue
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [n])


def test_the_layer_table_matches_the_architecture_doc():
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for title, members in LAYERS:
        assert title in doc
        for m in members:
            assert not m or f"`{m}" in doc, f"docs/architecture.md does not mention {m}"


def test_commands_declare_no_settings_dataclass():
    """Settings live beside the code they configure; commands/ only parses, calls and prints."""
    for path in sorted((ROOT / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        assert not classes, f"{path.name} defines {classes}: move them beside the code they configure"
