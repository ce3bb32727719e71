"""The teaching notebooks are committed clean: no outputs, no execution counts, no widget
state, and exactly what ``notebooks/_build.py`` writes (so a review of the .py is a review of
the notebooks)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = {
    "quickstart",
    "patterns_and_routing",
    "request_response",
    "notifications_and_chat",
    "task_queue",
    "dashboard",
    "exploring_traffic",
    "scaling_out",
}
PATHS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _builder():
    spec = importlib.util.spec_from_file_location("_notebook_build", NOTEBOOKS_DIR / "_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_teaching_notebook_is_there() -> None:
    assert {p.stem for p in PATHS} == EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_has_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        f"cell {i}: {len(cell.outputs)} output(s), execution_count={cell.execution_count}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name} was saved with outputs ({'; '.join(dirty)}): "
        "run `.venv/bin/python notebooks/_build.py` to rewrite it clean"
    )
    # Saved widget state is an output too (and can hold message payloads).
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state"
    assert all("attachments" not in cell for cell in nb.cells)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_self_contained(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert code[0] == "%load_ext redis_toolkit_nb", "every notebook starts by loading the extension"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    checks = [src for src in code if src.startswith("# Check cell")]
    assert len(checks) == 1, "one check cell prints the summary the tests assert"
    # Nothing points at a fixed server: REDIS_URL, localhost or the embedded default decide.
    assert not re.search(r"redis://|:6379", "\n".join(code)), "no hard-coded server URL"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_waits_poll_to_a_deadline(path: Path) -> None:
    """A ``time.sleep`` outside ``wait_for`` must say why it is not a wait (pacing, work)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        in_wait_for = False
        for line in cell.source.splitlines():
            if line.startswith("def "):
                in_wait_for = line.startswith("def wait_for(")
            elif line and not line[0].isspace():
                in_wait_for = False
            if "sleep(" in line and not in_wait_for:
                assert "#" in line, f"{path.name}: a bare sleep: {line.strip()!r}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_matches_its_generator(path: Path) -> None:
    source = path.with_suffix(".py")
    if source.exists():  # a jupytext percent file (notebook_convention.md): same cells
        import jupytext

        cells = [(c.cell_type, c.source) for c in jupytext.read(source).cells]
        nb = nbformat.read(path, as_version=4)
        assert cells == [(c.cell_type, c.source) for c in nb.cells], (
            f"{path.name} differs from {source.name}: run `jupytext --to ipynb {source}`"
        )
        return
    expected = _builder().render(path.stem)
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path.name} differs from notebooks/_build.py: edit the cells there and run "
        "`.venv/bin/python notebooks/_build.py`"
    )
