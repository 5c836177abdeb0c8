"""The Ray backend of the eval runner: an eval's cases spread over the processes of a Ray
cluster (a laptop, a cluster reached by address, KubeRay), for ``evaluate(..., backend="ray")``
and ``agentloop eval --backend ray``.

Each worker is a Ray actor that builds the agent once from the agent file (so a ``LocalModel``
is loaded once per worker process) and runs up to ``concurrency`` cases at once on its own
event loop, scoring each from the events it holds, exactly as the local runner does
(``run_attempt``). The driver hands out cases, keeps each worker at most ``concurrency`` deep
(the rest wait on the driver, so a lost worker loses only what it was running), appends every
record to ``results.jsonl`` as it arrives, and reports progress.

Traces go to the run directory's ``traces/`` from every worker (a folder all of them reach: a
shared filesystem in a cluster), or with ``collect_traces`` to a scratch folder on the worker,
shipped back through Ray's object store and written by the driver, so nothing depends on a
shared filesystem.

Faults: a worker that dies (killed, out of memory, a crash in native code) fails the cases it
was running; each is run once more, alone, on a separate retry worker, and the lost try is
recorded in its result (``AttemptRecord.retries``). A case that also takes the retry worker
down is recorded as an error (reason ``worker_crashed``) and not tried again. Lost workers are
replaced. Cancelling the eval (Ctrl-C) cancels the running cases and stops every worker; the
results written so far stay, and ``resume`` runs the rest.

This is the only module of agentloop that imports ``ray`` (the ``agentloop[ray]`` extra).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError as exc:  # pragma: no cover - depends on the environment
    from agentloop.errors import UserError

    raise UserError("backend='ray' needs Ray: pip install 'agentloop[ray]'") from exc

from agentloop.agent import Agent
from agentloop.agentfile import load_agent
from agentloop.evals.attempt import eval_log, not_scored, run_attempt, warn_if_queued
from agentloop.evals.datasets import Case
from agentloop.evals.records import (
    TRACES_DIR,
    AttemptRecord,
    EvalError,
    Journal,
    ProgressListener,
    Tally,
)
from agentloop.evals.scorers import Scorer, scorer_name, scorer_spec, scorers_for
from agentloop.evals.specs import parse_scorer
from agentloop.models import infer_model

WORKER_CRASHED = "worker_crashed"
"""The ``reason`` of an attempt that took its worker down twice."""


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs to build the agent and run cases (sent once, when it starts)."""

    agent_file: str
    model: str | None
    model_options: dict[str, Any]
    config_hash: str
    scorer_specs: list[str | None]
    scorers: list[Scorer | None]
    """Scorers without a spec (Python objects), pickled by Ray; ``None`` where a spec is."""
    run_dir: str
    eval_name: str
    case_timeout: float | None
    concurrency: int
    collect_traces: bool


class EvalWorker:
    """One worker process: the agent built once, cases run on its event loop."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        model = infer_model(spec.model, **spec.model_options) if spec.model else None
        self.agent = load_agent(spec.agent_file, model=model)
        if self.agent.config_hash != spec.config_hash:
            raise EvalError(
                f"on this worker, {spec.agent_file} builds agent version "
                f"{self.agent.config_hash}, not the driver's {spec.config_hash}: the agent "
                "file, its tools or the installed packages differ here"
            )
        self.scorers: list[Scorer] = [
            given if given is not None else parse_scorer(str(text))[0]
            for text, given in zip(spec.scorer_specs, spec.scorers, strict=True)
        ]
        self.serves = warn_if_queued(self.agent.model, spec.concurrency)
        scratch = tempfile.mkdtemp(prefix="agentloop-ray-") if spec.collect_traces else None
        self.folder = Path(scratch) if scratch is not None else Path(spec.run_dir)
        (self.folder / TRACES_DIR).mkdir(parents=True, exist_ok=True)

    def ready(self) -> dict[str, Any]:
        """Where this worker runs (answered once it has built the agent)."""
        node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return {"pid": os.getpid(), "node": node, "serves": self.serves}

    async def run(self, case: Case, attempt: int) -> tuple[AttemptRecord, bytes | None]:
        """Run and score one attempt; with ``collect_traces``, also its trace's bytes."""
        record = await run_attempt(
            self.agent,
            case,
            attempt,
            self.folder,
            self.scorers,
            self.spec.case_timeout,
            eval_name=self.spec.eval_name,
        )
        if not self.spec.collect_traces or record.trace is None:
            return record, None
        file = self.folder / record.trace
        data = file.read_bytes()
        file.unlink()
        return record, data

    def close(self) -> None:
        if self.spec.collect_traces:
            shutil.rmtree(self.folder, ignore_errors=True)


_RemoteWorker: Any = ray.remote(EvalWorker)  # an actor class; Ray's types do not follow it


@dataclass
class _Item:
    case: Case
    attempt: int
    retries: list[str] = field(default_factory=list)


@dataclass
class _Worker:
    handle: Any
    where: str
    busy: int = 0
    retry: bool = False


async def run_on_ray(
    *,
    folder: Path,
    agent: Agent,
    agent_file: Path,
    model: str | None,
    model_options: dict[str, Any],
    scorers: Sequence[Scorer],
    todo: list[tuple[Case, int]],
    tally: Tally,
    concurrency: int,
    case_timeout: float | None,
    progress: ProgressListener | None,
    address: str | None,
    workers: int | None,
    collect_traces: bool,
) -> None:
    """Run ``todo`` on a Ray cluster (``address``: ``"auto"``, ``"HOST:PORT"`` or
    ``"ray://HOST:PORT"``; ``None``: ``RAY_ADDRESS`` if set, else a new cluster of this
    machine, started for this eval and stopped after it), on ``workers`` workers
    (default: one per CPU of the cluster), ``concurrency`` cases at once on each, appending
    each record to ``folder/results.jsonl``."""
    spec = _spec(folder, agent, agent_file, model, scorers, case_timeout, concurrency)
    spec = replace(spec, model_options=model_options, collect_traces=collect_traces)
    connected_here = _connect(address)
    driver = _Driver(spec, folder, scorers, tally, progress)
    try:
        await driver.run(todo, _worker_count(workers))
    finally:
        driver.stop()
        if connected_here:
            ray.shutdown()


def _worker_count(workers: int | None) -> int:
    """``workers``, or one per CPU of the cluster; never more than it has CPUs (a worker
    takes one, and one that cannot be placed would be waited for forever)."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
    if workers is not None and workers > cpus:
        eval_log.warning(
            f"{workers} workers asked for, but the Ray cluster has {cpus} CPUs (a worker "
            f"takes one): running {cpus}",
            workers=workers,
            cpus=cpus,
        )
    return min(workers or cpus, cpus)


def _spec(
    folder: Path,
    agent: Agent,
    agent_file: Path,
    model: str | None,
    scorers: Sequence[Scorer],
    case_timeout: float | None,
    concurrency: int,
) -> WorkerSpec:
    return WorkerSpec(
        agent_file=str(agent_file.resolve()),
        model=model,
        model_options={},
        config_hash=agent.config_hash,
        scorer_specs=[scorer_spec(s) for s in scorers],
        scorers=[None if scorer_spec(s) is not None else s for s in scorers],
        run_dir=str(folder.resolve()),
        eval_name=folder.name,
        case_timeout=case_timeout,
        concurrency=concurrency,
        collect_traces=False,
    )


def _connect(address: str | None) -> bool:
    """Join (or start) the cluster unless this process is connected already; whether it
    connected now (and so disconnects at the end)."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":  # a new cluster of this machine alone, listening on loopback
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        raise EvalError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    return True


class _Driver:
    """Hands cases to workers, replaces lost ones, records every result once."""

    def __init__(
        self,
        spec: WorkerSpec,
        folder: Path,
        scorers: Sequence[Scorer],
        tally: Tally,
        progress: ProgressListener | None,
    ) -> None:
        self.spec, self.folder, self.tally, self.progress = spec, folder, tally, progress
        self.scorers = scorers
        self.workers: list[_Worker] = []
        self.retrier: _Worker | None = None
        self.pending: dict[asyncio.Future[Any], tuple[_Worker, _Item, Any]] = {}
        self.journal = Journal(folder)

    async def run(self, todo: list[tuple[Case, int]], count: int) -> None:
        self.workers = await self.start(count, retry=False)
        queue = deque(_Item(case, attempt) for case, attempt in todo)
        retries: deque[_Item] = deque()
        while queue or retries or self.pending:
            await self.fill(queue, retries)
            finished, _ = await asyncio.wait(self.pending, return_when=asyncio.FIRST_COMPLETED)
            for future in finished:
                worker, item, _ = self.pending.pop(future)
                worker.busy -= 1
                await self.settle(future, worker, item, retries)

    async def fill(self, queue: deque[_Item], retries: deque[_Item]) -> None:
        for worker in self.workers:
            while queue and worker.busy < self.spec.concurrency:
                self.submit(worker, queue.popleft())
        if retries and (self.retrier is None or self.retrier.busy == 0):
            if self.retrier is None:
                [self.retrier] = await self.start(1, retry=True)
            self.submit(self.retrier, retries.popleft())

    def submit(self, worker: _Worker, item: _Item) -> None:
        ref = worker.handle.run.remote(item.case, item.attempt)
        self.pending[asyncio.wrap_future(ref.future())] = (worker, item, ref)
        worker.busy += 1

    async def settle(
        self, future: asyncio.Future[Any], worker: _Worker, item: _Item, retries: deque[_Item]
    ) -> None:
        try:
            record, trace = future.result()
        except RayActorError as exc:
            await self.lost(worker, exc)
            why = f"the worker running it ({worker.where}) died: {_first_line(exc)}"
            if item.retries:  # it was already running alone on the retry worker
                self.save(self.crashed(item, [*item.retries, why]))
            else:
                item.retries.append(why)
                retries.append(item)
            return
        if trace is not None and record.trace is not None:
            target = self.folder / record.trace
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(trace)
        self.save(record.model_copy(update={"retries": item.retries}) if item.retries else record)

    def save(self, record: AttemptRecord) -> None:
        self.journal.append(record)
        report = self.tally.add(record)
        if self.progress is not None:
            self.progress(report)

    async def lost(self, worker: _Worker, exc: Exception) -> None:
        """Forget a dead worker; a regular one is replaced at once, the retry worker when
        the next retry needs it."""
        if worker.retry:
            if self.retrier is worker:
                self.retrier = None
            return
        if worker in self.workers:
            self.workers.remove(worker)
            self.workers.extend(await self.start(1, retry=False))

    async def start(self, count: int, *, retry: bool) -> list[_Worker]:
        """Start ``count`` workers and wait until each has built the agent."""
        options: dict[str, Any] = {
            "max_concurrency": 1 if retry else self.spec.concurrency,
            "num_cpus": 0 if retry else 1,
            "max_restarts": 0,
        }
        handles = [_RemoteWorker.options(**options).remote(self.spec) for _ in range(count)]
        try:
            places = await asyncio.gather(
                *(asyncio.wrap_future(h.ready.remote().future()) for h in handles)
            )
        except RayActorError as exc:
            for handle in handles:
                ray.kill(handle)
            raise EvalError(f"a Ray worker could not start: {_first_line(exc)}") from None
        queued = [p for p in places if p["serves"] < options["max_concurrency"]]
        if queued and not retry:
            eval_log.warning(
                f"on {len(queued)} worker(s) the model serves {queued[0]['serves']} request(s) "
                f"at once; with concurrency {options['max_concurrency']} the other requests "
                "queue (their latency is mostly waiting)",
            )
        return [
            _Worker(handle, f"pid {p['pid']} on {p['node']}", retry=retry)
            for handle, p in zip(handles, places, strict=True)
        ]

    def crashed(self, item: _Item, retries: list[str]) -> AttemptRecord:
        """The record of a case that took the retry worker down too: an error, not scored."""
        message = "the case took its worker down twice; not tried again"
        names = [scorer_name(s) for s in scorers_for(item.case, self.scorers)]
        return AttemptRecord(
            case_id=item.case.id,
            attempt=item.attempt,
            status="error",
            error=message,
            reason=WORKER_CRASHED,
            scores=not_scored(names, message),
            retries=retries,
        )

    def stop(self) -> None:
        """Cancel what still runs and stop every worker (also on Ctrl-C)."""
        for future, (_, _, ref) in self.pending.items():
            future.cancel()
            ray.cancel(ref, force=False)
        self.pending.clear()
        for worker in [*self.workers, *([self.retrier] if self.retrier else [])]:
            ray.kill(worker.handle)
        self.workers, self.retrier = [], None
        self.journal.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
