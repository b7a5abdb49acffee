import os
import subprocess
import venv
from pathlib import Path

import pytest

from accelsim.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("ACCELSIM_DEBUG", raising=False)


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    def invoke(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return invoke


@pytest.fixture
def write(tmp_path):
    def make(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return make


@pytest.fixture(scope="session")
def scalesim_python(tmp_path_factory) -> Path:
    """A Python with the real SCALE-Sim package, for the cross-checks against it.

    SCALE-Sim crashes on NumPy >= 2.4, so it gets a throw-away venv of its own and never enters
    the project's environment; SCALESIM_PYTHON names an existing one instead.  The tests skip
    only when the package cannot be installed (no registry), and say why."""
    if os.environ.get("SCALESIM_PYTHON"):
        return Path(os.environ["SCALESIM_PYTHON"])
    env_dir = tmp_path_factory.mktemp("scalesim-venv")
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "scalesim", "numpy<2.4"],
                             check=False, capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.skip(f"cannot install scalesim from the package registry: {install.stderr.strip()[-300:]}")
    return python


os.environ.setdefault("MPLBACKEND", "Agg")
