"""The public surface: ``__all__`` is sorted, complete and importable; importing the core loads
no notebook machinery (IPython, ipywidgets, pandas)."""

from __future__ import annotations
import __future__

import inspect
import subprocess
import sys
import textwrap
import types

import redis_toolkit_nb
from redis_toolkit_nb import ToolkitError


def test_all_is_sorted_and_unique():
    names = redis_toolkit_nb.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))


def test_every_name_in_all_is_importable():
    namespace: dict[str, object] = {}
    exec("from redis_toolkit_nb import *", namespace)  # noqa: S102 - the star import itself
    for name in redis_toolkit_nb.__all__:
        assert name in namespace, name
        assert getattr(redis_toolkit_nb, name) is namespace[name]


def test_all_is_complete():
    """Every public, non-module name the package defines is in ``__all__``."""
    public = {
        name
        for name, value in vars(redis_toolkit_nb).items()
        if not name.startswith("_")
        and not isinstance(value, (types.ModuleType, __future__._Feature))
    }
    assert public - set(redis_toolkit_nb.__all__) == set()


def test_public_names_have_docstrings():
    for name in redis_toolkit_nb.__all__:
        obj = getattr(redis_toolkit_nb, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_every_error_is_a_toolkit_error():
    errors = [getattr(redis_toolkit_nb, n) for n in redis_toolkit_nb.__all__ if n.endswith("Error")]
    assert len(errors) >= 7
    for exc in errors:
        assert issubclass(exc, ToolkitError)
    assert issubclass(redis_toolkit_nb.ToolkitConnectionError, ConnectionError)


def test_import_loads_no_notebook_machinery():
    code = textwrap.dedent(
        """
        import sys
        import redis_toolkit_nb
        from redis_toolkit_nb import *  # noqa
        import redis_toolkit_nb._codec, redis_toolkit_nb._reader, redis_toolkit_nb._dispatch
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {"IPython", "ipywidgets", "pandas", "ipykernel", "numpy"}
        )
        print("HEAVY", heavy)
        print("NOTEBOOK", "redis_toolkit_nb.notebook" in sys.modules)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert "NOTEBOOK False" in proc.stdout
    assert proc.stderr == ""


def test_version():
    assert isinstance(redis_toolkit_nb.__version__, str)
    assert redis_toolkit_nb.__version__.count(".") >= 2


def test_notebook_layer_uses_only_the_cores_exported_names():
    """``redis_toolkit_nb.notebook`` imports from the core only what ``__all__`` exports (no
    private module), so the core's internals can change without breaking it."""
    import ast
    from pathlib import Path

    folder = Path(redis_toolkit_nb.__file__).parent / "notebook"
    exported = set(redis_toolkit_nb.__all__)
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                assert node.module is None, f"{path.name} imports ..{node.module}"
                names = {alias.name for alias in node.names}
                assert names <= exported, f"{path.name}: {sorted(names - exported)} not exported"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("redis_toolkit_nb."), (path.name, node.module)
