"""The house stays layered: no module of visnet imports (even lazily) a module that imports it back."""

import ast
import os

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _modules() -> dict[str, set[str]]:
    graph = {}
    for folder in ("visnet", "serving", "tuning"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                tree = ast.parse(open(path, encoding="utf-8").read())
                imported = set()
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                        imported.add(node.module)
                        imported.update(f"{node.module}.{a.name}" for a in node.names)
                    elif isinstance(node, ast.Import):
                        imported.update(a.name for a in node.names)
                graph[module] = imported
    return {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}


def _is_package_of(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def test_no_two_modules_import_each_other():
    graph = _modules()
    circles = sorted((a, b) for a, deps in graph.items() for b in deps
                     if a < b and a in graph.get(b, ()) and not _is_package_of(a, b) and not _is_package_of(b, a))
    assert circles == []
    assert "visnet.training.trainer" not in graph["visnet.training.maml"]
