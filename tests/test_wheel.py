"""The wheel is the product: built from this tree, installed into a fresh virtual environment
outside the clone with only its extras, it runs an agent with the tool pack's calculator on the
embedded model.

Offline: the extras' dependencies come from ``.wheelhouse/`` (``make wheelhouse``, which
``make test`` runs first), never from an index. The built wheel itself is always fresh.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".wheelhouse"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env, timeout=540
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "--wheel-dir", out, ROOT,
        cwd=build,
    )  # fmt: skip
    [found] = out.glob("agentloop-*.whl")
    return found


def test_the_wheel_ships_the_package_the_tool_pack_and_its_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "agentloop/__init__.py",
        "agentloop/py.typed",
        "agentloop/toolpack/calculator.py",
        "agentloop/toolpack/fetch_url.py",
        "agentloop/evals/runner.py",
        "agentloop/replay/runner.py",
    ):
        assert expected in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Classifier: Typing :: Typed" in text
    assert "Provides-Extra: tools" in text and "Provides-Extra: local" in text


def test_a_fresh_environment_with_the_wheel_runs_an_agent_with_the_tool_pack(
    wheel: Path, tmp_path: Path
) -> None:
    assert WHEELHOUSE.is_dir(), "run `make wheelhouse` (make test does) to fill .wheelhouse/"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    work = tmp_path / "elsewhere"  # not the clone: nothing from the source tree is importable
    work.mkdir()
    run(
        python, "-m", "pip", "install", "--quiet", "--no-index",
        "--find-links", WHEELHOUSE, f"{wheel}[local,tools]",
        cwd=work,
    )  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = run(python, "-c", "import agentloop; print(agentloop.__file__)", cwd=work, env=clean)
    assert str(env_dir) in where and str(ROOT) not in where
    assert "usage: agentloop" in run(env_dir / "bin" / "agentloop", "--help", cwd=work, env=clean)
    agent_file = work / "calc.toml"  # the repository's example agent, which names its tools
    agent_file.write_text((ROOT / "agents" / "local-calculator.toml").read_text())
    assert '"agentloop.toolpack.calculator"' in agent_file.read_text()
    answer = run(
        env_dir / "bin" / "agentloop", "run", "What is 17 * 23?",
        "--agent", agent_file, "--trace-dir", work / "traces",
        cwd=work, env=clean,
    )  # fmt: skip
    assert "391" in answer
    [trace] = (work / "traces").glob("*.jsonl")
    assert '"name":"calculator"' in trace.read_text().replace(" ", "")
