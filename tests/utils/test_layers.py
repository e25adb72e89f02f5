"""utils/ layering (utils/__init__.py): a module imports only from its own sub-package or a lower one, and
nothing in utils imports models/, datasets/ or the scripts."""
import ast

import pytest

from conftest import REPO_ROOT

LAYERS = ["script", "files", "engine", "evaluation", "pictures", "training"]  # lowest first


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
            assert top not in ("models", "datasets", "losses", "transfer"), f"{path.name} imports {module}"
            if top == "utils":
                assert module.count(".") >= 1 and module.split(".")[1] in allowed, \
                    f"utils/{layer}/{path.name} imports {module}, a higher layer"


def test_every_sub_package_is_a_layer():
    packages = {p.name for p in (REPO_ROOT / "utils").iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS)
    assert not [p.name for p in (REPO_ROOT / "utils").glob("*.py") if p.name != "__init__.py"]
