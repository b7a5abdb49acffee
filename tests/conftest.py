import os
import subprocess
import time
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


# SCALE-Sim's venv is built once per test run, in the background from the start, so the pip
# install overlaps the other tests; with xdist the workers inherit where it is being built and
# wait for it there.  SCALE-Sim crashes on NumPy >= 2.4, so it never enters the project's own
# environment; SCALESIM_PYTHON names an existing one instead.
_BUILD_ENV = "ACCELSIM_TEST_SCALESIM_BUILD"
_BUILD_SCRIPT = """
set -u
"$1" -m venv "$2/venv" && "$2/venv/bin/python" -m pip install -q scalesim "numpy<2.4" >"$2/log" 2>&1
echo $? >"$2/done"
"""
_builder: subprocess.Popen | None = None


def _wants_scalesim(config) -> bool:
    """Whether this run collects the SCALE-Sim cross-checks (the whole suite, or their files)."""
    args = [a.split("::")[0] for a in config.args] or ["tests"]
    here = Path(__file__).resolve().parent
    for arg in args:
        path = Path(arg).resolve()
        if path == here or path == here.parent or path.name in ("test_scalesim_crosscheck.py", "test_op_cli.py"):
            return True
    return False


def pytest_configure(config):
    global _builder
    if os.environ.get("SCALESIM_PYTHON") or os.environ.get(_BUILD_ENV) or not _wants_scalesim(config):
        return  # named by the user, or already started by the xdist controller (inherited)
    import sys
    import tempfile
    build = tempfile.mkdtemp(prefix="accelsim-scalesim-")
    os.environ[_BUILD_ENV] = build
    _builder = subprocess.Popen(["bash", "-c", _BUILD_SCRIPT, "build", sys.executable, build],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def pytest_unconfigure(config):
    global _builder
    if _builder is not None:
        if _builder.poll() is None:
            import signal  # our own background build (its own process group), if the run ended first
            os.killpg(_builder.pid, signal.SIGTERM)
            _builder.wait(timeout=30)
        _builder = None
        import shutil
        shutil.rmtree(os.environ.pop(_BUILD_ENV, ""), ignore_errors=True)


@pytest.fixture(scope="session")
def scalesim_python(tmp_path_factory) -> Path:
    """A Python with the real SCALE-Sim package, for the cross-checks against it.  The tests
    skip only when the package cannot be installed (no registry), and say why."""
    if os.environ.get("SCALESIM_PYTHON"):
        return Path(os.environ["SCALESIM_PYTHON"])
    build = os.environ.get(_BUILD_ENV)
    if not build:  # a run that did not expect these tests: build here, in the foreground
        build = str(tmp_path_factory.mktemp("scalesim"))
        import sys
        subprocess.run(["bash", "-c", _BUILD_SCRIPT, "build", sys.executable, build], check=False, timeout=900)
    done = Path(build) / "done"
    deadline = time.monotonic() + 900
    while not done.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    status = done.read_text().strip() if done.is_file() else "timeout"
    if status != "0":
        log = Path(build) / "log"
        reason = log.read_text()[-300:].strip() if log.is_file() else status
        pytest.skip(f"cannot install scalesim from the package registry: {reason}")
    return Path(build) / "venv" / "bin" / "python"


os.environ.setdefault("MPLBACKEND", "Agg")
