"""Real notebooks executed by real kernels (ipykernel 7 from the venv, and 6.29) with nbclient,
against a private server whose URL reaches the kernel through REDIS_URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

from redis_toolkit_nb import RedisServer  # noqa: E402

IPYKERNEL6 = "6.29.5"
# Installed once next to the venv (CI recreates the venv, and this fixture reinstalls it).
IPYKERNEL6_DIR = Path(sys.prefix) / "ipykernel6"


def _ipykernel6() -> Path:
    if not (IPYKERNEL6_DIR / "ipykernel" / "__init__.py").exists():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(IPYKERNEL6_DIR), f"ipykernel=={IPYKERNEL6}"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode:
            pytest.skip(
                f"NOT TESTED on ipykernel 6: pip could not install it: {proc.stderr[-300:]}"
            )
    return IPYKERNEL6_DIR


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer("redis-server") as srv:
        yield srv


@pytest.fixture(scope="module", params=["7", "6"])
def kernel(request, redis_server, tmp_path_factory):
    """(kernel name, spec manager, expected major version): a temporary kernelspec running
    this venv's Python, with ipykernel 6 put first on PYTHONPATH for the "6" variant."""
    root = tmp_path_factory.mktemp(f"kernels{request.param}")
    env = {"REDIS_URL": redis_server.url}
    if request.param == "6":
        env["PYTHONPATH"] = str(_ipykernel6())
    name = f"rtk-ipykernel{request.param}"
    (root / name).mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name,
        "language": "python",
        "env": env,
    }
    (root / name / "kernel.json").write_text(json.dumps(spec))
    return name, KernelSpecManager(kernel_dirs=[str(root)]), request.param


def _execute(nb, kernel, cwd: Path):
    name, ksm, _ = kernel
    km = KernelManager(kernel_name=name, kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=60, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


LIVE = [
    "%load_ext redis_toolkit_nb",
    "import ipykernel, json\nprint(json.dumps({'ipykernel': ipykernel.__version__}))",
    "%%rtk_subscribe nb.* --name feed\nif data['i'] == 3:\n    raise RuntimeError('bad three')",
    '%rtk_publish --count 50 nb.a {"i": i}',
    # Nothing here calls refresh(): the refresher thread must bring the panel up to date.
    "import time\n"
    "deadline = time.time() + 15\n"
    "panel = feed.panel\n"
    "def ready():\n"
    "    return ('received 50' in panel.counters.value and 'bad three' in panel.log.value\n"
    "            and 'data-channel=\"nb.a\"' in panel.chart.value)\n"
    "while time.time() < deadline and not ready():\n"
    "    time.sleep(0.05)\n"
    "time.sleep(0.6)  # a few more ticks while this cell is busy\n"
    "df = feed.df\n"
    "print(json.dumps({'rows': len(df), 'first': df['data'].iloc[0], 'last': df['data'].iloc[-1],\n"
    "    'channels': sorted(set(df['channel'])), 'tz': str(df['time'].dt.tz),\n"
    "    'errors': feed.stats.handler_errors, 'counters': panel.counters.value,\n"
    "    'chart': 'data-channel=\"nb.a\"' in panel.chart.value,\n"
    "    'log': 'bad three' in panel.log.value}))",
    "%rtk stop feed",
]


def test_live_subscription_in_a_real_kernel(kernel, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in LIVE])
    _execute(nb, kernel, tmp_path)
    version = json.loads(_stdout(nb.cells[1]))["ipykernel"]
    assert version.split(".")[0] == kernel[2], f"ran on ipykernel {version}"
    # %%rtk_subscribe returned at once with the live panel as the cell's output.
    views = [o for o in nb.cells[2].outputs if o.output_type == "execute_result"]
    panel_id = views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert nb.cells[3].outputs[0]["data"]["text/plain"].startswith("published 50 messages")
    got = json.loads(_stdout(nb.cells[4]))
    assert got["rows"] == 50 and got["first"] == {"i": 0} and got["last"] == {"i": 49}
    assert got["channels"] == ["nb.a"] and got["tz"] == "UTC" and got["errors"] == 1
    assert "received 50" in got["counters"] and got["chart"] and got["log"]
    # The frontend side (nbclient records widget state from the comm messages it receives)
    # saw the refresher's updates: the counters and chart of the panel it displayed.
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    panel = state[panel_id]["state"]
    children = {c.removeprefix("IPY_MODEL_") for c in panel["children"]}
    assert "rtk-panel" in panel["_dom_classes"]
    counters = [
        state[c]["state"] for c in children if "rtk-counters" in state[c]["state"]["_dom_classes"]
    ]
    assert "received 50" in counters[0]["value"], counters[0]["value"][:200]
    charts = [
        state[c]["state"] for c in children if "rtk-chart" in state[c]["state"]["_dom_classes"]
    ]
    assert 'data-channel="nb.a"' in charts[0]["value"]
    assert "stopped feed" in _stdout(nb.cells[5])


def test_usage_error_stops_run_all(kernel, tmp_path):
    cells = ["%load_ext redis_toolkit_nb", "%rtk_publish news", "print('after the error')"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    with pytest.raises(CellExecutionError) as err:
        _execute(nb, kernel, tmp_path)
    assert err.value.ename == "UsageError"
    assert "missing PAYLOAD" in err.value.evalue
    # IPython shows a UsageError as one short line on stderr: no traceback.
    shown = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert (
        shown.startswith("UsageError: %rtk_publish: missing PAYLOAD") and "Traceback" not in shown
    )
    assert not [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert nb.cells[2].outputs == [] and nb.cells[2].execution_count is None
