"""The structure the pipeline issue set, checked on the source itself so it cannot drift back:
no import cycle between accelsim's modules (imports inside functions included), no code outside
``accelsim/hardware`` asking which kind of hardware it holds, and no file reads or catalogue-name
resolution below the API (only the CLI, ``accelsim.api`` and the loaders they call do that)."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "accelsim"
HARDWARE_KINDS = {"gpu", "systolic", "hardwired", "dataflow"}
KIND_CLASSES = {"GpuSpec", "SystolicSpec", "HardwiredSpec", "DataflowSpec"}

# Modules that read input files or turn a catalogue name into a spec: the user-facing edge and
# the one loader per format it calls.  Everything else takes typed values.
# Validation sits above the API as the CLI does: it reads its measured-points files and the
# configs their rows name, then predicts through the API.
EDGE = ("accelsim.cli", "accelsim.api", "accelsim.config.loader", "accelsim.validate")
LOADERS = {
    "accelsim.hardware": {"load_hardware"},
    "accelsim.model.spec": {"load_model"},
    "accelsim.model.hf_import": {"read_hf_config"},
    "accelsim.model.density": {"load_density"},
    "accelsim.dse.space": {"load_space"},
    "accelsim.importers.scalesim": {"read_config", "read_topology"},
    "accelsim.economics.tables": {"read"},
    # A sweep's own results store, re-read to resume it and to re-render its report.
    "accelsim.dse.runner": {"read_rows", "results_text", "__init__", "_truncate_torn_tail", "done_ids",
                            "locked_folder"},
    "accelsim.report.sweep": {"load"},
}
# Calls that read a file or resolve a catalogue name.
READS = {"open", "read_text", "read_bytes", "read_document", "load_model", "load_hardware",
         "load_density", "resolve_model", "resolve_hardware", "read_hf_config", "bundled_names"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The accelsim modules ``name`` imports anywhere in its body (functions included)."""
    package = name if name in known and (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() \
        else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def test_no_import_cycles():
    trees = modules()
    known = set(trees)
    graph = nx.DiGraph()
    for name, tree in trees.items():
        graph.add_node(name)
        for target in imported(name, tree, known):
            # A package's __init__ importing its own submodules is how packages export names.
            if not target.startswith(name + ".") or name not in known:
                graph.add_edge(name, target)
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles[:5])


def kind_questions(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Comparisons against a hardware kind's name and isinstance checks against a kind's spec."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            strings = {o.value for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str)}
            for o in operands:
                if isinstance(o, (ast.Tuple, ast.List, ast.Set)):
                    strings |= {e.value for e in o.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            touches_kind = any(isinstance(o, ast.Attribute) and o.attr in ("kind", "hw_kind") for o in operands)
            if touches_kind and strings & HARDWARE_KINDS:
                yield node.lineno, ast.unparse(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node.args[1])
                     if isinstance(n, (ast.Name, ast.Attribute))}
            if names & KIND_CLASSES:
                yield node.lineno, ast.unparse(node)


def test_no_hardware_kind_questions_outside_hardware():
    found = [f"{name}:{line}: {text}" for name, tree in modules().items()
             if not name.startswith("accelsim.hardware")
             for line, text in kind_questions(tree)]
    assert not found, "ask the backend instead:\n" + "\n".join(found)


def reads(tree: ast.Module) -> Iterator[tuple[str, int, str]]:
    """(enclosing function, line, call) for each call that reads a file or resolves a name."""
    def walk(node: ast.AST, function: str) -> Iterator[tuple[str, int, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from walk(child, child.name)
                continue
            if isinstance(child, ast.Call):
                func = child.func
                called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if called in READS:
                    yield function, child.lineno, ast.unparse(func)
            yield from walk(child, function)
    yield from walk(tree, "<module>")


@pytest.mark.parametrize("name", sorted(n for n in modules() if not n.startswith(EDGE)))
def test_no_reads_below_the_api(name):
    allowed = LOADERS.get(name, set())
    found = [f"{name}:{line} in {function}(): {call}(...)"
             for function, line, call in reads(modules()[name]) if function not in allowed]
    assert not found, "read files and resolve names in accelsim.api or the CLI:\n" + "\n".join(found)


def test_the_checks_can_fail():
    """Each check flags the pattern it exists to catch."""
    sample = ast.parse("import os\n"
                       "def f(hw, p):\n"
                       "    if hw.kind == 'gpu': pass\n"
                       "    if isinstance(hw, GpuSpec): pass\n"
                       "    return open(p).read(), load_model('x')\n")
    assert len(list(kind_questions(sample))) == 2
    assert [call for _, _, call in reads(sample)] == ["open", "load_model"]
    cyclic = nx.DiGraph([("a", "b"), ("b", "a")])
    assert list(nx.simple_cycles(cyclic))
