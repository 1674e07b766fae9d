"""The package's shape: no import cycles (imports inside functions count too), a stated job per module."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "revgen"


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in mods and t != name and not (name.startswith(t + ".") and path.name != "__init__.py"):
                    edges[name].add(t)
    return edges


def cycles(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_states_its_job_in_its_first_line():
    missing = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
               if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]  # fmt: skip
    assert missing == []


def test_tests_mirror_the_package_layout():
    tests = Path(__file__).resolve().parent
    stages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "data"}
    test_dirs = {p.name for p in tests.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert test_dirs <= stages, f"test folders without a package: {sorted(test_dirs - stages)}"
    assert {"train", "synthesize", "generate", "curate", "evaluate", "publish"} <= test_dirs


def test_the_readme_layout_section_names_every_package_and_module():
    readme = (ROOT.parent / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    names = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.name != "__init__.py"}
    names |= {str(p.relative_to(ROOT)) + "/" for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted(n for n in names if Path(n).name.rstrip("/") not in section)
    assert missing == [], f"README Layout misses {missing}"
