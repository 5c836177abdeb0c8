"""The eval runner: run an agent on every case of a dataset, score each run, keep the results.

``evaluate`` runs cases concurrently (async, at most ``concurrency`` at once, each within
``timeout`` seconds), ``repeats`` times each. A case that fails (a model error, a limit, a
timeout, anything it raises) is recorded as an error with its reason and scores 0 on every
scorer; it never stops the others. Everything lands in a run directory::

    RUN_DIR/eval.json       what was run: dataset, agent version (config_hash), scorers
    RUN_DIR/results.jsonl   one line per finished attempt, appended and flushed as it ends
    RUN_DIR/traces/         one trace per case and attempt

(``agentloop.evals.records`` reads and writes that directory; ``agentloop.evals.attempt`` runs
and scores one attempt, for this module's asyncio backend and the Ray backend alike.)

Because results are a journal, an interrupted eval resumes (``resume=True``): attempts already
in ``results.jsonl`` are not run again. Summaries (``agentloop.evals.summary``), comparisons
(``agentloop.evals.comparison``) and re-scoring (``rescore``) read the same directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agentloop._sync import blocking
from agentloop.agent import Agent
from agentloop.agentfile import load_agent
from agentloop.errors import UserError
from agentloop.evals.attempt import not_scored, run_attempt, score_attempt, warn_if_queued
from agentloop.evals.datasets import Case, Dataset
from agentloop.evals.records import (
    META_FILE,
    RESULTS_FILE,
    TRACES_DIR,
    AttemptRecord,
    EvalError,
    EvalMeta,
    EvalRun,
    Journal,
    ProgressListener,
    Tally,
    write_records,
)
from agentloop.evals.scorers import Scorer, ScorerError, scorer_name, scorer_spec, scorers_for
from agentloop.models import infer_model
from agentloop.models.base import Model
from agentloop.trace import now_iso

if TYPE_CHECKING:
    from agentloop.mcp.server import MCPServer

DEFAULT_ROOT = "runs"


# -- running -----------------------------------------------------------------------------------


async def evaluate(
    dataset: Dataset | str | os.PathLike[str],
    agent: Agent | str | os.PathLike[str],
    *,
    scorers: Sequence[Scorer] = (),
    run_dir: str | os.PathLike[str] | None = None,
    model: Model | str | None = None,
    concurrency: int = 4,
    repeats: int = 1,
    case_timeout: float | None = None,
    resume: bool = False,
    progress: ProgressListener | None = None,
    backend: Literal["local", "ray"] = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    collect_traces: bool = False,
    model_options: dict[str, Any] | None = None,
    mcp: Sequence[MCPServer] = (),
) -> EvalRun:
    """Run ``agent`` (an ``Agent`` or an agent file) on every case of ``dataset`` (a
    ``Dataset`` or a JSONL file), ``repeats`` times, scoring each run with ``scorers``; a
    run longer than ``case_timeout`` seconds is stopped and recorded as an error.

    ``model`` replaces the agent's model (a model string takes ``model_options``, the
    backend's options, recorded with it for a resume). ``run_dir`` defaults to a new folder under
    ``./runs``. With ``resume=True``, ``run_dir`` must hold an earlier run of the same agent
    version on the same dataset; only its unfinished attempts run. ``progress`` is called
    after every attempt. ``mcp`` adds MCP servers to an agent file's; the agent's MCP servers
    are opened once for the whole (local) eval, shared by its concurrent runs. Returns the run,
    read back from its directory.

    ``backend="ray"`` spreads the cases over a Ray cluster (``agentloop[ray]``; see
    ``agentloop.evals.ray_backend``): ``agent`` must be an agent file and ``model`` a string, since
    every worker builds the agent itself; ``concurrency`` is then per worker. ``ray_address``
    (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:PORT"``; default: ``RAY_ADDRESS``, else a new
    cluster of this machine),
    ``workers`` (default: one per CPU of the cluster) and ``collect_traces`` (ship traces back
    through Ray's object store instead of writing them to a folder every worker reaches)
    apply to it only.
    """
    if concurrency < 1 or repeats < 1:
        raise UserError("concurrency and repeats must be at least 1")
    if case_timeout is not None and not case_timeout > 0:
        raise UserError(f"case_timeout must be a positive number of seconds, not {case_timeout}")
    if model_options and not isinstance(model, str):
        raise UserError("model_options go with a model string (model='openai:...')")
    _check_backend(backend, agent, model, ray_address, workers, collect_traces)
    if mcp and backend == "ray":
        raise UserError(
            "mcp= servers stay in this process: with backend='ray', put them in "
            "the agent file's [[mcp]] tables (every worker builds the agent)"
        )
    cases, the_agent, folder, meta = _setup(
        dataset, agent, scorers, run_dir, model, repeats, case_timeout, model_options or {}, mcp
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            if backend == "local" and the_agent.tool_sources and not the_agent.is_open:
                await stack.enter_async_context(the_agent)  # once for the whole eval; its
                meta = meta.model_copy(  # version includes what its MCP servers serve
                    update={"config_hash": the_agent.config_hash, "agent": the_agent.config()}
                )
            done = _prepare(folder, meta, resume)
            todo = [
                (case, attempt)
                for attempt in range(repeats)
                for case in cases
                if (case.id, attempt) not in done
            ]
            tally = Tally(len(cases) * repeats, done.values())
            if backend == "ray":
                from agentloop.evals.ray_backend import run_on_ray

                assert isinstance(agent, str | os.PathLike)
                assert not isinstance(model, Model)
                await run_on_ray(
                    folder=folder,
                    agent=the_agent,
                    agent_file=Path(agent),
                    model=model,
                    model_options=model_options or {},
                    scorers=scorers,
                    todo=todo,
                    tally=tally,
                    concurrency=concurrency,
                    case_timeout=case_timeout,
                    progress=progress,
                    address=ray_address,
                    workers=workers,
                    collect_traces=collect_traces,
                )
            else:
                warn_if_queued(the_agent.model, concurrency)
                runner = _Runner(folder, the_agent, cases, scorers, case_timeout, progress)
                await runner.run_all(todo, concurrency, tally)
    finally:
        if the_agent is not agent:  # built here from the file: close what its model opened
            await the_agent.model.aclose()
    return EvalRun.load(folder)


def _check_backend(
    backend: str,
    agent: Agent | str | os.PathLike[str],
    model: Model | str | None,
    ray_address: str | None,
    workers: int | None,
    collect_traces: bool,
) -> None:
    if backend not in ("local", "ray"):
        raise UserError(f"backend must be 'local' or 'ray', not {backend!r}")
    if backend == "local":
        if ray_address is not None or workers is not None or collect_traces:
            raise UserError("ray_address, workers and collect_traces need backend='ray'")
        return
    if isinstance(agent, Agent):
        raise UserError(
            "backend='ray' needs an agent file, not an Agent object: every worker builds "
            "the agent from the file"
        )
    if isinstance(model, Model):
        raise UserError("backend='ray' takes model= as a model string, not a Model object")
    if workers is not None and workers < 1:
        raise UserError(f"workers must be at least 1, not {workers}")


evaluate_sync = blocking(evaluate)


def _setup(
    dataset: Dataset | str | os.PathLike[str],
    agent: Agent | str | os.PathLike[str],
    scorers: Sequence[Scorer],
    run_dir: str | os.PathLike[str] | None,
    model: Model | str | None,
    repeats: int,
    case_timeout: float | None,
    model_options: dict[str, Any],
    mcp: Sequence[MCPServer] = (),
) -> tuple[Dataset, Agent, Path, EvalMeta]:
    """Read the dataset and the agent, check the scorers, and describe the run."""
    if isinstance(agent, Agent) and model is not None:
        raise UserError("model= replaces an agent file's model; for an Agent, set its model")
    if isinstance(agent, Agent) and mcp:
        raise UserError("mcp= adds to an agent file's MCP servers; for an Agent, give it tools")
    cases = dataset if isinstance(dataset, Dataset) else Dataset.from_jsonl(dataset)
    agent_file = None if isinstance(agent, Agent) else Path(agent)
    replacement = infer_model(model, **model_options) if isinstance(model, str) else model
    the_agent = (
        agent if isinstance(agent, Agent) else load_agent(Path(agent), model=replacement, mcp=mcp)
    )
    _check_scorers(scorers, cases)
    label = agent_file.stem if agent_file is not None else the_agent.name
    folder = Path(run_dir) if run_dir is not None else _new_run_dir(label, the_agent.config_hash)
    meta = EvalMeta(
        created=now_iso(),
        label=label,
        config_hash=the_agent.config_hash,
        agent=the_agent.config(),
        agent_file=str(agent_file.resolve()) if agent_file is not None else None,
        model=model if isinstance(model, str) else None,
        model_options=model_options,
        dataset=None if isinstance(dataset, Dataset) else str(Path(dataset).resolve()),
        dataset_name=cases.name,
        dataset_digest=cases.digest,
        cases=len(cases),
        repeats=repeats,
        timeout=case_timeout,
        scorers=[scorer_name(s) for s in scorers],
        scorer_specs=[scorer_spec(s) for s in scorers],
    )
    return cases, the_agent, folder, meta


def _check_scorers(scorers: Sequence[Scorer], cases: Dataset) -> None:
    names = [scorer_name(s) for s in scorers]
    twice = {n for n in names if names.count(n) > 1}
    if twice:
        raise ScorerError(
            f"two scorers are named {sorted(twice)[0]!r}; give one another name (name=...)"
        )
    for case in cases:
        scorers_for(case, scorers)  # raises for a case naming an unknown scorer


def _new_run_dir(label: str, version: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    safe = re.sub(r"[^\w.-]", "_", label)
    base = Path(DEFAULT_ROOT) / f"{stamp}-{safe}-{version[:8]}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def _prepare(folder: Path, meta: EvalMeta, resume: bool) -> dict[tuple[str, int], AttemptRecord]:
    """Create the run directory, or check it for a resume; the attempts already done."""
    if not resume:
        if (folder / META_FILE).exists():
            raise EvalError(f"{folder} already holds an eval; resume it or choose another folder")
        (folder / TRACES_DIR).mkdir(parents=True, exist_ok=True)
        (folder / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return {}
    before = EvalRun.load(folder)
    if before.meta.config_hash != meta.config_hash:
        raise EvalError(
            f"{folder} was run with agent version {before.meta.config_hash}, this agent is "
            f"{meta.config_hash}; resuming would mix two agents (start a new eval instead)"
        )
    if before.meta.dataset_digest != meta.dataset_digest:
        raise EvalError(f"{folder} was run on a different dataset (its cases changed)")
    if before.meta.repeats != meta.repeats:
        raise EvalError(f"{folder} was run with repeats={before.meta.repeats}")
    (folder / TRACES_DIR).mkdir(parents=True, exist_ok=True)
    # Rewrite the journal without a torn last line, so new lines do not glue onto it.
    write_records(folder / RESULTS_FILE, before.records)
    return {r.key: r for r in before.records}


class _Runner:
    def __init__(
        self,
        folder: Path,
        agent: Agent,
        cases: Dataset,
        scorers: Sequence[Scorer],
        timeout: float | None,
        progress: ProgressListener | None,
    ) -> None:
        self.folder, self.agent, self.cases = folder, agent, cases
        self.scorers, self.timeout, self.progress = scorers, timeout, progress

    async def run_all(self, todo: list[tuple[Case, int]], concurrency: int, tally: Tally) -> None:
        """Run ``todo`` with ``concurrency`` workers, each taking the next attempt when its
        last one is recorded: as many tasks as run at once, not one per attempt waiting at a
        gate (10,000 cases would be 10,000 tasks and their frames, all alive from the start)."""
        pending = iter(todo)

        async def worker(journal: Journal) -> None:
            for case, attempt in pending:
                record = await self.attempt(case, attempt)
                journal.append(record)
                progress = tally.add(record)
                if self.progress is not None:
                    self.progress(progress)

        with Journal(self.folder) as journal:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, len(todo))):
                    group.create_task(worker(journal))

    async def attempt(self, case: Case, attempt: int) -> AttemptRecord:
        """Run one case once and score it; whatever goes wrong becomes an error record."""
        return await run_attempt(
            self.agent, case, attempt, self.folder, self.scorers, self.timeout, eval_name=None
        )


# -- re-scoring ----------------------------------------------------------------------------------


async def rescore(
    run_dir: str | os.PathLike[str],
    scorers: Sequence[Scorer],
    *,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    replace: bool = False,
) -> EvalRun:
    """Score a finished eval's recorded traces again, with no model calls.

    New scorers are added and same-named ones replaced; ``replace=True`` drops the old scores
    altogether. The dataset is read from where the eval recorded it unless given (cases carry
    ``expected`` and per-case settings). Errored attempts stay errors.
    """
    run = EvalRun.load(run_dir)
    source = dataset if dataset is not None else run.meta.dataset
    if source is None:
        raise EvalError(f"{run_dir} does not record its dataset's path; pass the dataset")
    cases = source if isinstance(source, Dataset) else Dataset.from_jsonl(source)
    _check_scorers(scorers, cases)
    updated: list[AttemptRecord] = []
    for record in run.records:
        case = cases.get(record.case_id)
        if case is None:
            raise EvalError(f"case {record.case_id!r} is not in the dataset any more")
        trace = run.read_trace(record) if record.status == "ok" else None
        if trace is None:
            names = [scorer_name(s) for s in scorers_for(case, scorers)]
            why = record.error or f"its trace {record.trace} cannot be read"
            fresh = not_scored(names, why)
        else:
            fresh = (await score_attempt(case, record.attempt, trace, run.path, scorers)).scores
        kept = {**({} if replace else record.scores), **fresh}
        updated.append(record.model_copy(update={"scores": kept}))
    write_records(run.path / RESULTS_FILE, updated)
    names = [scorer_name(s) for s in scorers]
    specs = [scorer_spec(s) for s in scorers]
    old = [] if replace else list(zip(run.meta.scorers, run.meta.scorer_specs, strict=True))
    merged = [(n, s) for n, s in old if n not in names] + list(zip(names, specs, strict=True))
    meta = run.meta.model_copy(
        update={"scorers": [n for n, _ in merged], "scorer_specs": [s for _, s in merged]}
    )
    (run.path / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return EvalRun.load(run.path)


rescore_sync = blocking(rescore)
