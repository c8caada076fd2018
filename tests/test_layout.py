"""The layout's rule, checked: dependencies point one way, and no package imports another's private names."""

import ast

from .conftest import REPO

PACKAGE = REPO / "inbedder"
# what each part may import from inbedder (besides itself); everything below it in the README's layout list
ALLOWED = {
    "errors": set(), "fs": set(), "exports": set(), "console": {"errors", "fs"},
    "engine": {"errors", "fs"},
    "lake": {"errors", "fs", "exports"},
    "index": {"errors", "fs", "exports", "lake", "engine"},
    "batches": {"errors", "lake", "engine"},
    "settings_files": {"errors"},
    "job": {"errors", "fs", "exports", "console", "lake", "engine", "index", "batches", "settings_files"},
    "spark": {"errors", "batches"},
    "ray": {"errors", "batches"},
    "serve": {"errors", "exports", "lake", "engine", "index"},
    "kmeans": {"errors"}, "data_splits": set(),
    "clusters": {"errors", "lake", "engine", "kmeans"},
    "evaluation": {"errors", "engine", "kmeans", "data_splits"},
    "training": {"errors", "fs", "engine", "data_splits"},
    "demo": {"engine"},
}
FORBIDDEN_IN_ENGINE = ("pyspark", "ray", "deltalake", "faiss")


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _part(path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_dependencies_point_one_way_and_private_names_stay_home():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        part = _part(path)
        if part in ("cli", "__init__"):
            continue  # the top: may use every part
        for module, names in _imports(path):
            top = module.split(".")[0]
            if part == "engine" and top in FORBIDDEN_IN_ENGINE:
                problems.append(f"{path.relative_to(REPO)} imports {module}")
            if top != "inbedder" or module == "inbedder":
                continue
            target = module.split(".")[1]
            if target != part and target not in ALLOWED[part]:
                problems.append(f"{path.relative_to(REPO)} ({part}) imports {module}")
            if target != part and any(n.startswith("_") for n in names):
                problems.append(f"{path.relative_to(REPO)} imports private {names} from {module}")
    assert problems == []
