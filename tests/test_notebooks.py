"""The notebooks: committed executed (GitHub shows their pictures), re-run headless, no logic.

``test_notebook_runs`` executes each notebook with nbclient against the test
session's influxd (``INFLUXDB_HOST``/``INFLUXDB_PORT``; models and checkpoints
under a temp dir) and fails on any cell error.  The committed files must hold
their outputs with pictures, and nothing of the machine they ran on: no
paths, no addresses, no secrets.
"""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]
MACHINE = re.compile(r"/work/|/tmp/|/root/|/home/|/Users/|\b[A-Z]:\\[A-Za-z]|127\.0\.0\.1:\d+|"
                     r"localhost:\d+")
SECRET = re.compile(r"(?i)password\s*[=:]|passwd|api[_-]?key|secret\s*[=:]|token\s*[=:]|"
                    r"authorization:|xox[abp]-|hooks\.slack\.com/services/|-----BEGIN|AKIA[0-9A-Z]{16}")
STATEMENT = re.compile(r"^\s*(def|class|for|while|if|elif|try|with|lambda)\b", re.M)


def _code(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _images(nb):
    return [o for c in _code(nb) for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["ekg_kmeans.ipynb", "temperature_zscore.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path, influx_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PIPELINE_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    for cell in _code(nb):
        cell.outputs = []
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    assert len(_images(nb)) >= 8, "a notebook with fewer pictures than it promises"
    errors = [o for c in _code(nb) for o in c.outputs if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_holds_no_logic(path):
    nb = json.loads(path.read_text())
    for cell in _code(nb):
        src = "".join(cell["source"])
        assert not STATEMENT.search(src), f"{path.name}: move logic into pipeline/: {src[:80]!r}"
        for line in src.splitlines():
            if line.startswith(("import ", "from ")):
                assert re.match(r"(from|import) (pipeline|matplotlib)\b", line), \
                    f"{path.name}: notebooks import pipeline (and matplotlib), got {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_notebook_is_executed_with_its_pictures(path):
    nb = json.loads(path.read_text())
    cells = _code(nb)
    assert all(c.get("execution_count") for c in cells), f"{path.name}: commit it executed"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{path.name}: run top to bottom, once"
    assert not [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(_images(nb)) >= 8
    assert path.stat().st_size < 2_500_000, f"{path.name}: pictures too large for the repository"
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and params[0] is cells[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_outputs_hold_no_machine_paths_or_secrets(path):
    nb = json.loads(path.read_text())
    for c in _code(nb):
        for o in c.get("outputs", []):
            text = "".join(o.get("text", "")) + "".join(
                "".join(v) if isinstance(v, list) else str(v)
                for k, v in o.get("data", {}).items() if not k.startswith("image/"))
            assert not MACHINE.search(text), f"{path.name}: {MACHINE.search(text).group()!r}"
            assert not SECRET.search(text), f"{path.name}: {SECRET.search(text).group()!r}"
