"""The Ray backend from the command line against a cluster started apart (``ray start --head``
in a subprocess, on loopback) and reached by address: Ctrl-C stops the eval and every worker,
the results so far stay, and ``--resume`` runs only the rest, with the scores the cases earn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentloop.evals import EvalRun
from fakes import FakeOpenAIServer
from fakes.eval_cases import WRONG_EVERY, agent_file, dataset, replier, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
RAY = Path(sys.executable).with_name("ray")
CLI = Path(sys.executable).with_name("agentloop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A Ray head node in its own process group; its address and the pid of ``ray start``."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                str(RAY),
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "ray start took over 90 s:\n" + log.read_text()
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def lines(file: Path) -> int:
    return file.read_text().count("\n") if file.exists() else 0


def test_ctrl_c_stops_the_cluster_work_and_resume_finishes_it(
    tmp_path: Path, head: tuple[str, int]
) -> None:
    address, head_pid = head
    with FakeOpenAIServer() as server:
        server.fallback = replier(0.05)
        agent, cases = agent_file(tmp_path, server.url), dataset(tmp_path, 150)
        out = tmp_path / "run"
        ray_flags = ["--backend", "ray", "--ray-address", address, "--workers", "2"]
        command = [
            str(CLI),
            "eval",
            str(cases),
            "--agent",
            str(agent),
            "--scorer",
            "numeric",
            "--concurrency",
            "4",
            "--out",
            str(out),
            *ray_flags,
        ]
        first = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while lines(out / "results.jsonl") < 20:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=60)
        assert first.returncode == 130, stderr
        assert "cancelled" in stderr
        assert "/s" in stderr  # the progress line shows the rate
        done = lines(out / "results.jsonl")
        assert 20 <= done < 150
        deadline = time.monotonic() + 30
        while worker_pids(below=head_pid):  # the workers are stopped, not left running cases
            assert time.monotonic() < deadline, worker_pids(below=head_pid)
            time.sleep(0.5)

        resumed = subprocess.run(
            [str(CLI), "eval", "--resume", str(out), *ray_flags],
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert f"{150 - done} attempts to run" in resumed.stderr
    run = EvalRun.load(out)
    assert run.complete
    assert len(run.records) == 150
    wrong = {r.case_id for r in run.records if not r.passed}
    assert wrong == {f"c{i:04d}" for i in range(WRONG_EVERY, 150, WRONG_EVERY)}
    assert all(r.status == "ok" for r in run.records)
