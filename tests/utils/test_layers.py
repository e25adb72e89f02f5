"""The layers of the code: in utils/ (utils/__init__.py) a module imports only from its own sub-package or a lower
one, and nothing in utils imports models/, datasets/ or scoring/; datasets/ never imports scoring/ (scoring builds on
datasets); and nothing imports a top-level script (they are entry points only)."""
import ast

import pytest

from conftest import REPO_ROOT

LAYERS = ["script", "files", "engine", "evaluation", "pictures", "training"]  # lowest first
SCRIPTS = sorted(p.stem for p in REPO_ROOT.glob("*.py"))  # predict, app, train_*, ...: entry points


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize("layer", LAYERS)
def test_no_module_imports_upward(layer):
    files = sorted((REPO_ROOT / "utils" / layer).glob("*.py"))
    assert files, f"utils/{layer} is empty"
    allowed = set(LAYERS[:LAYERS.index(layer) + 1])
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            assert top not in ("models", "datasets", "losses", "transfer", "scoring"), f"{path.name} imports {module}"
            if top == "utils":
                assert module.count(".") >= 1 and module.split(".")[1] in allowed, \
                    f"utils/{layer}/{path.name} imports {module}, a higher layer"


def test_every_sub_package_is_a_layer():
    packages = {p.name for p in (REPO_ROOT / "utils").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    assert not [p.name for p in (REPO_ROOT / "utils").glob("*.py") if p.name != "__init__.py"]


def test_datasets_never_import_scoring():
    files = sorted((REPO_ROOT / "datasets").rglob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            assert module.split(".")[0] != "scoring", f"{path.relative_to(REPO_ROOT)} imports {module}"


def test_nothing_imports_a_script():
    """Packages, benchmarks and the scripts themselves (the tests of a script import it, nothing else does)."""
    assert {"predict", "app", "train_first_stage", "visualize"} <= set(SCRIPTS)
    assert {"scoring", "transfer", "utils", "datasets"} <= {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    folders = [p.parent for p in REPO_ROOT.glob("*/__init__.py") if p.parent.name != "tests"]
    files = sorted(REPO_ROOT.glob("*.py"))
    for folder in [*folders, REPO_ROOT / "benchmarks"]:
        files += sorted(folder.rglob("*.py"))
    for path in files:
        for module in imported_modules(path):
            assert module.split(".")[0] not in SCRIPTS, f"{path.relative_to(REPO_ROOT)} imports {module}"
