"""``agentloop eval``: run a dataset through one or more agents, compare runs, re-score them.

    agentloop eval DATASET --agent FILE [--agent FILE2 ...] [--scorer SPEC ...]
    agentloop eval --resume RUN_DIR
    agentloop eval compare RUN_A RUN_B
    agentloop eval rescore RUN_DIR --scorer SPEC ...

The summary table (or ``--json``) goes to stdout; the progress bar to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentloop.cli._output import EXIT_OK, add_model_options, out, positive_int, say
from agentloop.cli.render import one_line, plural
from agentloop.cli.run import add_mcp_options, mcp_servers
from agentloop.errors import UserError
from agentloop.evals.comparison import Comparison, compare
from agentloop.evals.records import EvalProgress, EvalRun
from agentloop.evals.runner import evaluate, rescore
from agentloop.evals.scorers import Scorer
from agentloop.evals.specs import parse_scorer
from agentloop.evals.summary import Summary, summarize
from agentloop.terminal import escape

USAGE = """\
agentloop eval DATASET --agent FILE [--agent FILE ...] [options]
       agentloop eval --resume RUN_DIR [options]
       agentloop eval compare RUN_A RUN_B [--json]
       agentloop eval rescore RUN_DIR --scorer SPEC [--scorer SPEC ...] [--json]"""

SCORER_HELP = """\
scorers (--scorer SPEC, repeatable):
  exact | contains | regex | numeric | json_subset      the final answer vs the case's
                                                        "expected"
  tool_called:tool=NAME | tool_not_called:tool=NAME     what the agent did
  max_steps:n=N | no_tool_errors
  citations[:tool=NAME]      every cited [source: id] was retrieved in the run
  KIND:key=value,key=value   settings (values are JSON if they parse, else text), e.g.
                             exact:ignore_case=true  numeric:tolerance=0.01
  KIND:{"key": ...}          settings as a JSON object
  FILE.py[:FUNCTION]         your own scorer(s): functions (case, trace) -> Score
Settings are checked before the eval starts: a wrong name, type or regex exits 2.
"""


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parser = commands.add_parser(
        "eval",
        parents=[common],
        usage=USAGE,
        help="evaluate agents on a dataset; compare or re-score eval runs",
        description="Run every case of DATASET (JSONL) through each --agent, score the runs,\n"
        "and print a summary per agent (and a comparison when there are two or more).\n"
        "Each agent's results and traces go into its own run directory.",
        epilog=SCORER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", metavar="DATASET", help=argparse.SUPPRESS)
    parser.add_argument(
        "--agent", metavar="FILE", action="append", default=[], help="an agent file (TOML)"
    )
    parser.add_argument("--model", help="a model string that replaces every agent's model")
    add_model_options(parser)
    parser.add_argument(
        "--scorer", metavar="SPEC", action="append", default=[], help="a scorer (see below)"
    )
    add_mcp_options(parser)
    parser.add_argument(
        "--concurrency", metavar="N", type=positive_int, default=4, help="cases at once (4)"
    )
    parser.add_argument(
        "--repeats", metavar="R", type=positive_int, default=1, help="attempts per case (1)"
    )
    parser.add_argument(
        "--timeout", metavar="S", type=float, help="seconds per case before it is an error"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="the run directory (default: runs/<time>-<agent>-<version>); with several "
        "agents, one folder per agent inside DIR",
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="finish an interrupted eval: run only what is missing"
    )
    parser.add_argument(
        "--replace", action="store_true", help="rescore: drop the old scores, keep only the new"
    )
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: asyncio in this process (default); ray: cases spread over a Ray cluster "
        "(pip install 'agentloop[ray]'), --concurrency cases at once per worker",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: RAY_ADDRESS, "
        "else a new cluster on this machine)",
    )
    parser.add_argument(
        "--workers", metavar="N", type=positive_int, help="Ray workers (default: one per CPU)"
    )
    parser.add_argument(
        "--collect-traces",
        action="store_true",
        help="ship traces back to this machine through Ray's object store (no shared folder)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.set_defaults(handler=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if words[:1] == ["compare"]:
        _only(args, "compare", allowed={"json"})
        if len(words) != 3:
            raise UserError("usage: agentloop eval compare RUN_A RUN_B")
        return _compare(args, words[1], words[2])
    if words[:1] == ["rescore"]:
        _only(args, "rescore", allowed={"json", "scorer", "replace"})
        if len(words) != 2 or not args.scorer:
            raise UserError("usage: agentloop eval rescore RUN_DIR --scorer SPEC [...]")
        return _rescore(args, words[1])
    if args.backend != "ray":
        _only(args, "--backend local", allowed={*RUN_FLAGS, "resume", "replace"})
    if args.resume is not None:
        _only(args, "--resume", allowed={"json", "concurrency", "resume", *RAY_FLAGS})
        if words:
            raise UserError("--resume takes the run directory only; the dataset is recorded")
        return _resume(args)
    if len(words) != 1 or not args.agent:
        raise UserError("usage: agentloop eval DATASET --agent FILE [--agent FILE ...]")
    if args.replace:
        raise UserError("--replace belongs to `agentloop eval rescore`")
    return _run(args, Path(words[0]))


def _only(args: argparse.Namespace, form: str, allowed: set[str]) -> None:
    given = {
        "agent": bool(args.agent),
        "model": args.model is not None,
        "model-option": bool(args.model_options),
        "scorer": bool(args.scorer),
        "concurrency": args.concurrency != 4,
        "repeats": args.repeats != 1,
        "timeout": args.timeout is not None,
        "out": args.out is not None,
        "resume": args.resume is not None,
        "replace": args.replace,
        "backend": args.backend != "local",
        "ray-address": args.ray_address is not None,
        "workers": args.workers is not None,
        "collect-traces": args.collect_traces,
        "mcp": bool(args.mcp or args.mcp_url),
    }
    extra = [name for name, used in given.items() if used and name not in allowed]
    if extra:
        raise UserError(f"--{extra[0]} does not apply to {form}")


RAY_FLAGS = ("backend", "ray-address", "workers", "collect-traces")
RUN_FLAGS = (
    "json",
    "agent",
    "model",
    "model-option",
    "scorer",
    "concurrency",
    "repeats",
    "timeout",
    "out",
    "mcp",
)


def _backend(args: argparse.Namespace) -> dict[str, Any]:
    """The backend arguments of ``evaluate``, from the command line."""
    if args.backend != "ray":
        return {}
    return {
        "backend": "ray",
        "ray_address": args.ray_address,
        "workers": args.workers,
        "collect_traces": args.collect_traces,
    }


def _scorers(specs: list[str]) -> list[Scorer]:
    return [s for spec in specs for s in parse_scorer(spec)]


def _run(args: argparse.Namespace, dataset: Path) -> int:
    if args.model_options and args.model is None:
        raise UserError("--model-option needs --model (an agent file sets model_options itself)")
    scorers = _scorers(args.scorer)
    runs: list[EvalRun] = []
    several = len(args.agent) > 1
    for agent in args.agent:
        run_dir = None
        if args.out is not None:
            run_dir = Path(args.out) / Path(agent).stem if several else Path(args.out)
        say(f"eval {escape(str(dataset))} with agent {escape(agent)}")
        progress = _ProgressBar(Path(agent).stem)
        coroutine = evaluate(
            dataset,
            agent,
            scorers=scorers,
            run_dir=run_dir,
            model=args.model,
            model_options=dict(args.model_options),
            concurrency=args.concurrency,
            repeats=args.repeats,
            case_timeout=args.timeout,
            progress=progress,
            **_backend(args),
            mcp=mcp_servers(args),
        )
        runs.append(asyncio.run(coroutine))
        progress.end()
    _report(args, runs)
    return EXIT_OK


def _resume(args: argparse.Namespace) -> int:
    before = EvalRun.load(args.resume)
    meta = before.meta
    if meta.agent_file is None or meta.dataset is None:
        raise UserError(
            f"{args.resume} was started from Python with an Agent object; resume it with "
            "evaluate_sync(..., run_dir=..., resume=True)"
        )
    if any(spec is None for spec in meta.scorer_specs):
        raise UserError(
            f"{args.resume} uses scorers given as Python objects; resume it from Python"
        )
    scorers = _scorers([s for s in meta.scorer_specs if s is not None])
    missing = meta.cases * meta.repeats - len(before.records)
    say(f"resuming {escape(args.resume)}: {plural(missing, 'attempt')} to run")
    progress = _ProgressBar(meta.label)
    coroutine = evaluate(
        meta.dataset,
        meta.agent_file,
        scorers=scorers,
        run_dir=args.resume,
        model=meta.model,
        model_options=meta.model_options,
        concurrency=args.concurrency,
        repeats=meta.repeats,
        case_timeout=meta.timeout,
        resume=True,
        progress=progress,
        **_backend(args),
    )
    run = asyncio.run(coroutine)
    progress.end()
    _report(args, [run])
    return EXIT_OK


def _rescore(args: argparse.Namespace, run_dir: str) -> int:
    run = asyncio.run(rescore(run_dir, _scorers(args.scorer), replace=args.replace))
    _report(args, [run])
    return EXIT_OK


def _compare(args: argparse.Namespace, run_a: str, run_b: str) -> int:
    comparison = compare(run_a, run_b)
    if args.json:
        out(json.dumps(comparison.to_json()))
    else:
        for line in comparison_lines(comparison):
            out(line)
    return EXIT_OK


def _report(args: argparse.Namespace, runs: list[EvalRun]) -> None:
    summaries = [summarize(r) for r in runs]
    comparisons = [compare(runs[0], r) for r in runs[1:]]
    if args.json:
        data: dict[str, Any] = {
            "runs": [
                {"run_dir": str(r.path), "summary": s.to_json()}
                for r, s in zip(runs, summaries, strict=True)
            ]
        }
        if comparisons:
            data["comparisons"] = [c.to_json() for c in comparisons]
        out(json.dumps(data))
        return
    for run, summary in zip(runs, summaries, strict=True):
        for line in summary_lines(summary, run):
            out(line)
        out("")
    for comparison in comparisons:
        for line in comparison_lines(comparison):
            out(line)
        out("")


class _ProgressBar:
    """``[#####.....] 12/20  pass 75%  errors 1  3.2/s  ETA 0:03`` on stderr: redrawn in
    place on a terminal, otherwise a line every tenth of the way."""

    WIDTH = 24

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.shown = -1
        self.drawn = False

    def __call__(self, p: EvalProgress) -> None:
        filled = round(self.WIDTH * p.done / p.total) if p.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        rate = f"{100 * p.passed / p.done:.0f}%" if p.done else "-"
        line = f"[{bar}] {p.done}/{p.total}  pass {rate}  errors {p.errors}"
        if p.rate > 0:
            line += f"  {p.rate:.1f}/s"
        if p.eta_s is not None and p.done < p.total:
            line += f"  ETA {_clock(p.eta_s)}"
        if self.tty:
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
            self.drawn = True
            return
        tenth = 10 * p.done // p.total if p.total else 10
        if tenth != self.shown:
            self.shown = tenth
            say(line)

    def end(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``3:12:05``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(ci: tuple[float, float], pct: bool = True) -> str:
    if pct:
        return f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"
    return f"{ci[0]:.3f}-{ci[1]:.3f}"


def summary_lines(s: Summary, run: EvalRun) -> list[str]:
    """The summary table of one eval run."""
    errors = ", ".join(f"{escape(k)} {v}" for k, v in sorted(s.error_reasons.items()))
    unfinished = s.expected_attempts - s.attempts
    lines = [
        f"agent {one_line(s.label, 60)}  version {escape(s.config_hash)}",
        f"run   {escape(str(run.path))}",
        f"{plural(s.attempts, 'attempt')}"
        + (f" ({unfinished} not run yet)" if unfinished > 0 else "")
        + f": {s.passed} passed ({_pct(s.pass_rate)}, 95% CI {_ci(s.pass_ci)}), "
        + plural(s.errors, "error")
        + (f" ({errors})" if errors else ""),
    ]
    if s.scorer_errors:
        broken = ", ".join(f"{one_line(c.name, 40)} {c.errors}" for c in s.scorers if c.errors)
        lines.append(
            f"{plural(s.scorer_errors, 'scorer error')} ({broken}): the scorer failed, see "
            "each score's explanation"
        )
    if s.feedback:
        lines.append("feedback " + ", ".join(f"{escape(k)} {v}" for k, v in s.feedback.items()))
    if s.scorers:
        rows = [("scorer", "n", "mean", "95% CI", "passed", "pass rate", "95% CI")]
        rows += [
            (
                one_line(c.name, 40),
                str(c.n),
                f"{c.mean:.3f}",
                _ci(c.mean_ci, pct=False),
                f"{c.passed}/{c.n}",
                _pct(c.pass_rate),
                _ci(c.pass_ci),
            )
            for c in s.scorers
        ]
        lines += _table(rows)
    lines.append(
        f"steps {s.steps_mean:.2f} per attempt, tool calls {s.tool_calls_mean:.2f}, "
        f"tokens {s.input_tokens} in / {s.output_tokens} out ({s.tokens_mean:.1f} per attempt), "
        f"latency p50 {s.latency_p50:.2f} s, p95 {s.latency_p95:.2f} s"
    )
    return lines


def comparison_lines(c: Comparison) -> list[str]:
    """Which cases changed (with both traces) and the aggregate deltas with their tests."""
    lines = [
        f"compare A {one_line(c.label_a, 40)} ({escape(c.version_a)}) -> "
        f"B {one_line(c.label_b, 40)} ({escape(c.version_b)})",
        f"  A: {escape(c.path_a)}",
        f"  B: {escape(c.path_b)}",
    ]
    if not c.same_dataset:
        lines.append("warning: the runs used different datasets; comparing the shared case ids")
    for kind, changed in (("worse", c.worse), ("better", c.better)):
        lines.append(f"{kind} ({len(changed)}):")
        for case in changed:
            lines.append(
                f"  {one_line(case.case_id, 60)}  pass {case.pass_a:.2f} -> {case.pass_b:.2f}"
                f"  score {case.score_a:.3f} -> {case.score_b:.3f}"
            )
            lines.append(f"      A: {escape(case.trace_a or '(no trace)')}")
            lines.append(f"      B: {escape(case.trace_b or '(no trace)')}")
    same = len(c.cases) - len(c.better) - len(c.worse)
    lines.append(f"unchanged: {same}")
    if c.only_a or c.only_b:
        lines.append(f"only in A: {len(c.only_a)}, only in B: {len(c.only_b)} (not compared)")
    rows = [("metric", "A", "B", "delta", "cases", "test", "p", "")]
    rows += [
        (
            one_line(d.metric, 40),
            f"{d.a:.3f}",
            f"{d.b:.3f}",
            f"{d.delta:+.3f}",
            str(d.cases),
            d.test.test + ("" if d.test.exact else " (sampled)"),
            f"{d.test.p_value:.4f}",
            "significant" if d.significant else "",
        )
        for d in c.deltas
    ]
    lines += _table(rows)
    return lines


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
