"""The teaching notebooks are committed clean: no outputs, no execution counts, no widget
state, and in sync with their jupytext percent source ``notebooks/<name>.py`` (so a review of
the .py is a review of the notebook).

To change a notebook, edit its ``.py`` and run
``.venv/bin/jupytext --to ipynb --update notebooks/<name>.py`` (``--update`` keeps the cell ids,
so the .ipynb diff shows only what changed); or edit the .ipynb in Jupyter, clear its outputs
and run ``.venv/bin/jupytext --to py:percent notebooks/<name>.ipynb``.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
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
    "debugging_flows",
}
PATHS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOKS_DIR.glob("*.py"))
UPDATE = "`.venv/bin/jupytext --to ipynb --update notebooks/{stem}.py`"


def test_every_teaching_notebook_is_there() -> None:
    assert {p.stem for p in PATHS} == EXPECTED
    # Each notebook has its text source beside it, and nothing else is a .py there.
    assert {p.stem for p in SOURCES} == EXPECTED, "notebooks/ holds one <name>.py per notebook"


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
        f"clear its outputs: {UPDATE.format(stem=path.stem)} rewrites it from its source"
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


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_in_sync_with_its_source(path: Path) -> None:
    source = path.with_suffix(".py")
    text = source.read_text(encoding="utf-8")
    # The percent format: one `# %%` line per cell, reviewable and diffable as Python.
    assert "format_name: percent" in text, f"{source.name} is not a jupytext percent file"
    from_text = jupytext.reads(text, fmt="py:percent")
    committed = nbformat.read(path, as_version=4)
    assert _cells(committed) == _cells(from_text), (
        f"{path.name} and {source.name} differ: after editing {source.name} run "
        f"{UPDATE.format(stem=path.stem)}"
    )
    assert committed.metadata.get("kernelspec", {}).get("name") == "python3"
