"""Scorers: functions that judge one run of one case, ``(case, trace) -> Score``.

A scorer is any callable taking a ``Case`` and the run's ``Trace`` and returning a ``Score``
(or an awaitable of one: model-judged scorers are async). Its name in reports is its
``__name__``. The built-in scorers are factories returning such callables:

- on the final answer: ``exact_match``, ``contains``, ``regex``, ``numeric``, ``json_subset``;
- on what the agent did: ``tool_called``, ``tool_not_called``, ``max_steps``,
  ``no_tool_errors``;
- on grounding: ``citations`` (every cited source was retrieved in the run).

Settings are checked when the scorer is made (names, types, a regex that compiles), so a
wrong setting is a usage error before the eval runs, not a zero on every case.

A case can tune a built-in scorer for itself through its ``scorers`` field, keyed by scorer
name (``{"numeric": {"tolerance": 0.5}}``); naming a built-in the eval does not use adds it
for that case. On the command line a scorer is ``KIND[:key=value,...]`` (values are JSON
where they parse as JSON, else text), ``KIND:{json object}``, or ``FILE.py[:function]``.
"""

from __future__ import annotations

import inspect
import json
import re
import string
import typing
from collections.abc import Awaitable, Callable, Sequence
from functools import cache
from typing import Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agentloop.errors import UserError
from agentloop.evals.datasets import Case
from agentloop.feedback.grounding import CITATION, retrieved_passages
from agentloop.trace import Trace


class ScorerError(UserError):
    """A scorer spec or setting is wrong, or a scorer file cannot be loaded."""


class Score(BaseModel):
    """How well one run did by one scorer: ``value`` in [0, 1] and a pass/fail verdict."""

    model_config = ConfigDict(frozen=True)

    value: float = Field(ge=0.0, le=1.0)
    passed: bool
    explanation: str = ""
    scorer: str = ""
    """The scorer's name; the runner fills it in when a scorer leaves it empty."""
    error: bool = False
    """The scorer itself failed (raised, or returned something else): not the run's fault,
    counted apart in the summary."""


Scorer: TypeAlias = Callable[[Case, Trace], Score | Awaitable[Score]]
"""Any function ``(case, trace) -> Score``, sync or async."""


def scorer_name(scorer: Scorer) -> str:
    return str(getattr(scorer, "__name__", None) or type(scorer).__name__)


async def apply_scorer(scorer: Scorer, case: Case, trace: Trace) -> Score:
    """Run ``scorer`` (awaiting it if async). A scorer that raises or returns something other
    than a ``Score`` gives a failing score that says why, marked ``error`` (the summary counts
    it), so one bad scorer cannot stop an eval."""
    name = scorer_name(scorer)
    try:
        result = scorer(case, trace)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        return Score(value=0.0, passed=False, scorer=name, explanation=_raised(exc), error=True)
    if not isinstance(result, Score):
        return Score(
            value=0.0,
            passed=False,
            scorer=name,
            explanation=f"scorer error: returned {type(result).__name__}, not a Score",
            error=True,
        )
    return result if result.scorer else result.model_copy(update={"scorer": name})


def _raised(exc: Exception) -> str:
    return f"scorer error: {type(exc).__name__}: {exc}"


def verdict(ok: bool, explanation: str) -> Score:
    return Score(value=1.0 if ok else 0.0, passed=ok, explanation=explanation)


# -- built-in scorers --------------------------------------------------------------------------


class BuiltinScorer:
    """A built-in scorer: a kind (``KINDS``) with settings; the case's own settings for this
    scorer's name win over the eval's."""

    def __init__(self, kind: str, options: dict[str, Any], name: str | None = None) -> None:
        if kind not in KINDS:
            raise ScorerError(f"unknown scorer {kind!r}; built-in scorers: {', '.join(KINDS)}")
        self.kind = kind
        self.options = _check_options(kind, options)
        self.__name__ = name or kind

    @property
    def spec(self) -> str:
        """This scorer as a command-line spec (what a results file records)."""
        options = {
            **self.options,
            **({"name": self.__name__} if self.__name__ != self.kind else {}),
        }
        return f"{self.kind}:{json.dumps(options, sort_keys=True)}" if options else self.kind

    def __call__(self, case: Case, trace: Trace) -> Score:
        own = case.scorers.get(self.__name__)
        if not own and type(self) is BuiltinScorer:  # checked (and converted) when made
            return KINDS[self.kind](case, trace, **self.options)
        return KINDS[self.kind](case, trace, **self.options_for(case))

    def options_for(self, case: Case) -> dict[str, Any]:
        """The settings for ``case`` (its own win), checked; ``ScorerError`` if they are
        wrong."""
        own = case.scorers.get(self.__name__, {})
        try:
            return _check_options(self.kind, {**self.options, **own})
        except ScorerError as exc:
            if not own:
                raise
            raise ScorerError(f"case {case.id!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"<scorer {self.spec}>"


@cache
def _settings(kind: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """A built-in's settings, those without a default, and their declared types (read once:
    inspecting a signature on every scored case showed in the eval runner's profile)."""
    params = inspect.signature(KINDS[kind]).parameters
    allowed = [p for p in params if p not in ("case", "trace")]
    required = [p for p in allowed if params[p].default is inspect.Parameter.empty]
    return allowed, required, typing.get_type_hints(KINDS[kind])


def _check_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The settings checked against the scorer's signature: known names, required ones
    present, each value of its declared type (``"abc"`` is not a tolerance), a ``pattern``
    that compiles. Returns them converted (``"2"`` for an ``int`` is refused; JSON numbers are
    taken as they are). ``ScorerError`` names the scorer, the setting and what it needs."""
    allowed, required, hints = _settings(kind)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ScorerError(
            f"scorer {kind!r} has no setting {unknown[0]!r}; its settings: "
            f"{', '.join(allowed) or 'none'}"
        )
    missing = [p for p in required if p not in options]
    if missing:
        raise ScorerError(f"scorer {kind!r} needs the setting {missing[0]!r}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        try:
            checked[key] = TypeAdapter(hints[key]).validate_python(value, strict=_strict(value))
        except ValidationError:
            want = getattr(hints[key], "__name__", None) or str(hints[key])
            raise ScorerError(
                f"scorer {kind!r}: setting {key!r} must be {want}, not {value!r}"
            ) from None
    pattern = checked.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ScorerError(
                f"scorer {kind!r}: pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    return checked


def _strict(value: Any) -> bool:
    """Text is never converted to a number or a boolean (``n=x`` and ``n="2"`` are errors;
    the command line already turned ``n=2`` into a number)."""
    return isinstance(value, str)


def normalize(
    text: str,
    *,
    ignore_case: bool = False,
    strip: bool = True,
    collapse_whitespace: bool = True,
    ignore_punctuation: bool = False,
) -> str:
    """The text as the output scorers compare it."""
    if ignore_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation))
    if collapse_whitespace:
        text = " ".join(text.split())
    elif strip:
        text = text.strip()
    return text.casefold() if ignore_case else text


def _expected(case: Case, given: Any) -> Any:
    return case.expected if given is None else given


def _no_output(trace: Trace) -> Score | None:
    return None if trace.output is not None else verdict(False, "the run gave no final answer")


def _exact(
    case: Case,
    trace: Trace,
    *,
    expected: Any = None,
    ignore_case: bool = False,
    strip: bool = True,
    collapse_whitespace: bool = True,
    ignore_punctuation: bool = False,
) -> Score:
    want = _expected(case, expected)
    if want is None:
        return verdict(False, "the case has no expected value")
    if (missing := _no_output(trace)) is not None:
        return missing
    norm = {
        "ignore_case": ignore_case,
        "strip": strip,
        "collapse_whitespace": collapse_whitespace,
        "ignore_punctuation": ignore_punctuation,
    }
    got = normalize(str(trace.output), **norm)
    target = normalize(want if isinstance(want, str) else json.dumps(want), **norm)
    if got == target:
        return verdict(True, "the answer matches")
    return verdict(False, f"expected {_short(target)}, got {_short(got)}")


def _contains(
    case: Case,
    trace: Trace,
    *,
    expected: Any = None,
    ignore_case: bool = False,
    collapse_whitespace: bool = True,
) -> Score:
    want = _expected(case, expected)
    if want is None:
        return verdict(False, "the case has no expected value")
    if (missing := _no_output(trace)) is not None:
        return missing
    needles = [str(w) for w in want] if isinstance(want, list) else [str(want)]
    norm = {"ignore_case": ignore_case, "collapse_whitespace": collapse_whitespace}
    got = normalize(str(trace.output), **norm)
    absent = [n for n in needles if normalize(n, **norm) not in got]
    found = len(needles) - len(absent)
    value = found / len(needles) if needles else 1.0
    if not absent:
        return Score(value=value, passed=True, explanation="every expected text is in the answer")
    listed = ", ".join(_short(a) for a in absent)
    return Score(value=value, passed=False, explanation=f"not in the answer: {listed}")


def _regex(
    case: Case, trace: Trace, *, pattern: str | None = None, ignore_case: bool = False
) -> Score:
    want = pattern if pattern is not None else case.expected
    if not isinstance(want, str):
        return verdict(False, "no pattern: set `pattern` or a string `expected`")
    if (missing := _no_output(trace)) is not None:
        return missing
    compiled = re.compile(want, re.IGNORECASE if ignore_case else 0)
    found = compiled.search(str(trace.output))
    if found:
        return verdict(True, f"matched {_short(found.group(0))}")
    return verdict(False, f"no match for /{_short(want)}/")


_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")
_STATED = re.compile(
    r"(?:\b(?:answer|result|total|sum|product|difference|quotient|equals|is|are|was|gives|got)"
    r"\b|=|:|≈)\s*(?:about |approximately |roughly |~)?\$?\s*"
    r"(" + _NUMBER.pattern + r")",
    re.IGNORECASE,
)
_ASIDE = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


def stated_number(answer: str) -> float | None:
    """The number an answer gives as its result, by these rules in order:

    1. the number after the last phrase that states a result (``the answer is 391``,
       ``= 391``, ``total: 391``, ``it equals 391``);
    2. with asides in parentheses or brackets removed (``391 (took 1 step)``), the last
       number left;
    3. the last number anywhere in the answer.

    ``None`` if the answer holds no number."""
    for text in (_ASIDE.sub(" ", answer), answer):
        stated = _STATED.findall(text)
        if stated:
            return _to_float(stated[-1])
    for text in (_ASIDE.sub(" ", answer), answer):
        numbers = _NUMBER.findall(text)
        if numbers:
            return _to_float(numbers[-1])
    return None


def _to_float(text: str) -> float:
    return float(text.replace(",", ""))


def _numeric(
    case: Case,
    trace: Trace,
    *,
    expected: Any = None,
    tolerance: float = 1e-9,
    relative: float = 0.0,
) -> Score:
    want = _expected(case, expected)
    try:
        target = float(want)
    except (TypeError, ValueError):
        stated = stated_number(want) if isinstance(want, str) else None
        if stated is None:
            return verdict(False, f"the expected value {want!r} is not a number")
        target = stated  # an expected answer in words ("12 + 30 = 42"), as from a correction
    if (missing := _no_output(trace)) is not None:
        return missing
    got = stated_number(str(trace.output))
    if got is None:
        return verdict(False, f"no number in the answer {_short(str(trace.output))}")
    allowed = max(tolerance, relative * abs(target))
    if abs(got - target) <= allowed:
        return verdict(True, f"{got:g} is within {allowed:g} of {target:g}")
    return verdict(False, f"{got:g} is not within {allowed:g} of {target:g}")


def _citations(case: Case, trace: Trace, *, tool: str | None = None, require: bool = True) -> Score:
    if (missing := _no_output(trace)) is not None:
        return missing
    retrieved = retrieved_passages(trace, tool)
    cited = list(dict.fromkeys(CITATION.findall(str(trace.output))))
    unknown = [c for c in cited if c not in retrieved]
    if unknown:
        value = (len(cited) - len(unknown)) / len(cited)
        listed = ", ".join(_short(u, 60) for u in unknown[:5])
        return Score(
            value=value,
            passed=False,
            explanation=f"cites {len(unknown)} source(s) the run never retrieved: {listed}",
        )
    if require and retrieved and not cited:
        return verdict(False, f"the answer cites none of the {len(retrieved)} retrieved source(s)")
    if not cited:
        return verdict(True, "nothing retrieved, nothing cited")
    return verdict(True, f"all {len(cited)} cited source(s) were retrieved in the run")


def _json_subset(case: Case, trace: Trace, *, expected: Any = None) -> Score:
    want = _expected(case, expected)
    if want is None:
        return verdict(False, "the case has no expected value")
    if (missing := _no_output(trace)) is not None:
        return missing
    try:
        got = parse_json_output(str(trace.output))
    except ValueError as exc:
        return verdict(False, str(exc))
    problem = subset_problem(want, got, "$")
    return verdict(problem is None, problem or "the answer holds every expected value")


def parse_json_output(text: str) -> Any:
    """The JSON value in a model's answer: the whole text, a fenced block, or the first JSON
    object or array in it."""
    body = text.strip()
    fence = re.search(r"```(?:json)?\s*\n(.*?)```", body, re.DOTALL)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body)
    except ValueError:
        pass
    starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
    if starts:
        try:
            return json.JSONDecoder().raw_decode(body[min(starts) :])[0]
        except ValueError:
            pass
    raise ValueError(f"no JSON value in the answer {_short(text)}")


def subset_problem(want: Any, got: Any, path: str) -> str | None:
    """``None`` if ``want`` is contained in ``got`` (objects: every expected key, recursively;
    arrays: same length, item by item; anything else: equal), else where it is not."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path}: expected an object, got {_short(json.dumps(got))}"
        for key, value in want.items():
            if key not in got:
                return f"{path}.{key}: missing"
            problem = subset_problem(value, got[key], f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return f"{path}: expected an array of {len(want)}, got {_short(json.dumps(got))}"
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            problem = subset_problem(w, g, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(want, bool) != isinstance(got, bool) or want != got:
        return f"{path}: expected {json.dumps(want)}, got {_short(json.dumps(got))}"
    return None


def _tool_called(
    case: Case,
    trace: Trace,
    *,
    tool: str,
    arguments: dict[str, Any] | None = None,
    pattern: str | None = None,
    min_times: int = 1,
) -> Score:
    calls = [c for c in trace.tool_calls() if c.valid and c.name == tool]
    if arguments is not None:
        calls = [c for c in calls if subset_problem(arguments, c.arguments, "$") is None]
    if pattern is not None:
        calls = [c for c in calls if re.search(pattern, c.raw_arguments)]
    how = "".join(
        [
            f" with arguments {json.dumps(arguments)}" if arguments is not None else "",
            f" with arguments matching /{pattern}/" if pattern is not None else "",
        ]
    )
    ok = len(calls) >= min_times
    return verdict(ok, f"{tool!r} was called{how} {len(calls)} time(s), needed {min_times}")


def _tool_not_called(case: Case, trace: Trace, *, tool: str) -> Score:
    calls = [c for c in trace.tool_calls() if c.name == tool]
    return verdict(not calls, f"{tool!r} was asked for {len(calls)} time(s)")


def _max_steps(case: Case, trace: Trace, *, n: int) -> Score:
    return verdict(trace.steps <= n, f"{trace.steps} step(s), at most {n} allowed")


def _no_tool_errors(case: Case, trace: Trace) -> Score:
    results = trace.tool_results()
    failed = [r for r in results if r.error is not None]
    value = 1.0 - len(failed) / len(results) if results else 1.0
    detail = ", ".join(f"{r.name}: {r.error}" for r in failed[:5])
    explanation = f"{len(failed)} of {len(results)} tool call(s) failed" + (
        f" ({detail})" if detail else ""
    )
    return Score(value=value, passed=not failed, explanation=explanation)


KINDS: dict[str, Callable[..., Score]] = {
    "exact": _exact,
    "contains": _contains,
    "regex": _regex,
    "numeric": _numeric,
    "json_subset": _json_subset,
    "tool_called": _tool_called,
    "tool_not_called": _tool_not_called,
    "max_steps": _max_steps,
    "no_tool_errors": _no_tool_errors,
    "citations": _citations,
}
"""Built-in scorer kinds by name."""


def exact_match(*, name: str | None = None, **options: Any) -> BuiltinScorer:
    """The answer equals ``expected`` (the case's, unless given) after normalisation:
    ``ignore_case``, ``strip`` (default on), ``collapse_whitespace`` (default on),
    ``ignore_punctuation``. A non-text ``expected`` is compared as its JSON text."""
    return BuiltinScorer("exact", options, name)


def contains(*, name: str | None = None, **options: Any) -> BuiltinScorer:
    """The answer contains ``expected`` (a text, or a list of texts that must all appear;
    value = the share found); ``ignore_case``, ``collapse_whitespace``."""
    return BuiltinScorer("contains", options, name)


def regex(pattern: str | None = None, *, name: str | None = None, **options: Any) -> BuiltinScorer:
    """``pattern`` (else the case's ``expected``) is found in the answer; ``ignore_case``."""
    given = {"pattern": pattern} if pattern is not None else {}
    return BuiltinScorer("regex", {**given, **options}, name)


def numeric(*, name: str | None = None, **options: Any) -> BuiltinScorer:
    """The number the answer states as its result (``stated_number``: after "is", "=",
    "answer:"...; else the last number outside parentheses) is within ``tolerance``
    (absolute) or ``relative`` (a fraction of the expected value) of ``expected`` (a number,
    or a text whose stated number is taken the same way, as a person's correction gives it)."""
    return BuiltinScorer("numeric", options, name)


def json_subset(*, name: str | None = None, **options: Any) -> BuiltinScorer:
    """The answer holds JSON that contains ``expected``: every expected key with its value,
    recursively; extra keys are fine."""
    return BuiltinScorer("json_subset", options, name)


def tool_called(tool: str, *, name: str | None = None, **options: Any) -> BuiltinScorer:
    """``tool`` was called (a valid call) at least ``min_times``, optionally with
    ``arguments`` containing the given values or raw arguments matching ``pattern``."""
    return BuiltinScorer("tool_called", {"tool": tool, **options}, name)


def tool_not_called(tool: str, *, name: str | None = None) -> BuiltinScorer:
    """The model never asked for ``tool`` (not even with invalid arguments)."""
    return BuiltinScorer("tool_not_called", {"tool": tool}, name)


def max_steps(n: int, *, name: str | None = None) -> BuiltinScorer:
    """The run took at most ``n`` model requests."""
    return BuiltinScorer("max_steps", {"n": n}, name)


def citations(
    *, tool: str | None = None, require: bool = True, name: str | None = None
) -> BuiltinScorer:
    """Grounding: every source id the answer cites (``[source: path#n]``) was returned by a
    retrieval tool in the same run (``tool``: only that tool's results count), and, with
    ``require``, an answer given after something was retrieved cites at least one. Value: the
    share of cited ids that were retrieved."""
    options: dict[str, Any] = {"require": require}
    if tool is not None:
        options["tool"] = tool
    return BuiltinScorer("citations", options, name)


def no_tool_errors(*, name: str | None = None) -> BuiltinScorer:
    """No tool call failed (value: the share of tool calls that did not)."""
    return BuiltinScorer("no_tool_errors", {}, name)


def scorers_for(case: Case, scorers: Sequence[Scorer]) -> list[Scorer]:
    """The eval's scorers plus the built-ins this case names for itself; ``ScorerError`` if
    the case's settings for a built-in are wrong."""
    names = {scorer_name(s) for s in scorers}
    extra: list[Scorer] = []
    for name in case.scorers:
        if name in names:
            continue
        if name not in KINDS:
            raise ScorerError(
                f"case {case.id!r} sets up scorer {name!r}, which is neither one of this "
                f"eval's scorers nor a built-in ({', '.join(KINDS)})"
            )
        extra.append(_CaseScorer(name))
    for scorer in [*scorers, *extra]:  # a case's wrong setting is a usage error, found early
        own = case.scorers.get(scorer_name(scorer))
        if isinstance(scorer, BuiltinScorer) and (own or type(scorer) is not BuiltinScorer):
            scorer.options_for(case)
    return [*scorers, *extra]


class _CaseScorer(BuiltinScorer):
    """A built-in a case asked for; its settings are checked when it scores that case."""

    def __init__(self, kind: str) -> None:
        self.kind, self.options, self.__name__ = kind, {}, kind


def scorer_spec(scorer: Scorer) -> str | None:
    """The command-line spec that rebuilds ``scorer``, if it has one (built-ins and scorers
    loaded from files do)."""
    spec = getattr(scorer, "spec", None)
    return spec if isinstance(spec, str) else None


def _short(text: str, limit: int = 80) -> str:
    text = text if isinstance(text, str) else str(text)
    return repr(text if len(text) <= limit else text[:limit] + "...")
