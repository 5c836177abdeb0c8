"""The Ray backend on a real Ray cluster started in this process (``ray.init(num_cpus=2)``):
the same scores as the local runner for 200 cases against the loopback fake server (50 ms a
request), a worker killed by pid mid-run losing nothing, a case that kills every worker it
touches reported instead of retried forever, traces shipped back through the object store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")  # installed by `make install` (the ray extra); never skipped there

from agentloop.evals import EvalRun, evaluate  # noqa: E402
from agentloop.evals.records import EvalProgress  # noqa: E402
from agentloop.evals.specs import parse_scorer  # noqa: E402
from agentloop.trace import read_trace  # noqa: E402
from fakes import FakeOpenAIServer  # noqa: E402
from fakes.eval_cases import agent_file, dataset, kill, outcomes, replier, worker_pids  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
SCORERS = parse_scorer("numeric")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        _node_ip_address="127.0.0.1",
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        fake.fallback = replier(0.05)
        yield fake


@pytest.mark.usefixtures("cluster")
async def test_same_scores_as_local_and_a_killed_worker_loses_nothing(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    agent, cases = agent_file(tmp_path, server.url), dataset(tmp_path, 200)
    local = await evaluate(
        cases, agent, scorers=SCORERS, concurrency=50, run_dir=tmp_path / "local"
    )
    killed: list[int] = []

    def kill_one(p: EvalProgress) -> None:
        if p.done >= 60 and not killed:
            pids = worker_pids(below=os.getpid())
            assert len(pids) == 2
            killed.append(pids[0])
            kill(pids[0])

    on_ray = await evaluate(
        cases,
        agent,
        scorers=SCORERS,
        concurrency=25,
        run_dir=tmp_path / "ray",
        backend="ray",
        progress=kill_one,
    )
    assert killed
    assert outcomes(on_ray) == outcomes(local)
    assert len(on_ray.records) == 200
    assert sum(r.status == "ok" for r in on_ray.records) == 200
    retried = [r for r in on_ray.records if r.retries]
    assert retried  # the killed worker was running cases
    assert all("died" in r.retries[0] and len(r.retries) == 1 for r in retried)
    assert all(
        r.passed == (int(r.case_id[1:]) % 7 != 0 or r.case_id == "c0000") for r in on_ray.records
    )
    for record in on_ray.records:  # every trace is in the run directory, scored
        trace = read_trace(on_ray.path / str(record.trace))
        assert [s.scorer for s in trace.scores()] == ["numeric"]
    assert (on_ray.path / "results.jsonl").read_text().count("\n") == 200


@pytest.mark.usefixtures("cluster")
async def test_a_case_that_crashes_every_worker_is_reported_once(
    tmp_path: Path, server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="agentloop")
    agent, cases = agent_file(tmp_path, server.url), dataset(tmp_path, 12, crash=frozenset({5}))
    run = await evaluate(
        cases,
        agent,
        scorers=SCORERS,
        concurrency=4,
        run_dir=tmp_path / "r",
        backend="ray",
        workers=3,
        collect_traces=True,
    )
    by_id = {r.case_id: r for r in run.records}
    assert len(by_id) == 12
    crashed = by_id["c0005"]
    assert crashed.status == "error"
    assert crashed.reason == "worker_crashed"
    assert len(crashed.retries) == 2
    assert crashed.scores["numeric"].value == 0
    others = [r for r in run.records if r.case_id != "c0005"]
    assert all(r.status == "ok" for r in others)
    for record in others:  # shipped back through the object store, written by the driver
        assert read_trace(run.path / str(record.trace)).terminal is not None
    assert EvalRun.load(run.path).complete
    [capped] = [r.getMessage() for r in caplog.records if "workers asked for" in r.getMessage()]
    assert "3 workers asked for, but the Ray cluster has 2 CPUs" in capped
