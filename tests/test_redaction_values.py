"""Redaction on values: secrets with any characters are masked in every encoding a value takes
in the trace, user patterns cannot break a line, every writer and the logs use the run's
secrets. The property tests feed the redactor arbitrary secrets and text."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.errors import ToolExecutionError
from agentloop.events import ToolCallRequested, ToolResultRecorded
from agentloop.feedback import add_feedback
from agentloop.feedback.export import sft_export, write_jsonl
from agentloop.redaction import MASK, Redactor, register_secrets
from agentloop.testing import ScriptedModel
from agentloop.trace import TraceHeader, TraceWriter


def decodings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string any chain of JSON decodings can get out of ``value``: its strings and
    keys, and, for each string that is itself JSON, everything inside it."""
    if isinstance(value, str):
        yield value
        if depth < 6:
            try:
                inner = json.loads(value)
            except (ValueError, RecursionError):
                return
            yield from decodings(inner, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from decodings(item, depth)
    elif isinstance(value, list):
        for item in value:
            yield from decodings(item, depth)


def recoverable(path: Path, secret: str) -> bool:
    # Lines end with "\n" only: str.splitlines() would also split inside a value at U+0085.
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line and any(secret in text for text in decodings(json.loads(line))):
            return True
    return False


HOSTILE_SECRETS = ['pa"ss\\word-123', "clé-secrète-ü", 'x"}\n\u2028{"y', "日本語のひみつ"]


@pytest.mark.parametrize("secret", HOSTILE_SECRETS)
def test_a_secret_with_quotes_backslashes_or_non_ascii_is_masked_everywhere(
    tmp_path: Path, secret: str
) -> None:
    @tool
    def login(user: str, token: str) -> str:
        """Log in."""
        return f"logged in {user} with {token}"

    raw_ascii = json.dumps({"user": "ann", "token": secret})
    raw_unicode = json.dumps({"user": "ann", "token": f"<{secret}>"}, ensure_ascii=False)
    model = ScriptedModel(
        [
            ModelResponse.tool_call("login", raw_ascii),
            ModelResponse.tool_call("login", raw_unicode),
            f"done with {secret}",
        ]
    )
    agent = Agent(model, tools=[login], trace_dir=tmp_path, secrets=[secret])
    result = agent.run_sync(f"log in with {secret}")
    assert result.trace_path is not None
    trace = read_trace(result.trace_path)  # every line still parses and validates
    assert not recoverable(result.trace_path, secret)
    assert trace.output == f"done with {MASK}"
    assert trace.tool_results()[0].content == f"logged in ann with {MASK}"
    assert trace.tool_calls()[0].arguments == {"user": "ann", "token": MASK}


def test_escaped_spellings_inside_raw_arguments_are_decoded_and_masked(tmp_path: Path) -> None:
    secret = "abcdef-secret-value"
    spelled = "\\u0061bcdef-secret\\/value"  # JSON text that decodes to... a near miss
    exact = "\\u0061bcdef-secret-value"  # and one that decodes to the secret
    raw = '{"a": "' + spelled + '", "b": "' + exact + '"}'
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path, header(), Redactor([secret], registered=False))
    writer.write(call_event(raw))
    writer.close()
    assert not recoverable(path, secret)
    assert read_trace(path).tool_calls()[0].raw_arguments.startswith('{"a": "')


def test_a_user_pattern_masks_values_and_cannot_break_the_line(tmp_path: Path) -> None:
    @tool
    def config() -> str:
        """Show the configuration."""
        return "user: ann\npassword: hunter2-long\nport: 80"

    model = ScriptedModel([ModelResponse.tool_call("config", {}), "password: hunter2-long"])
    agent = Agent(model, tools=[config], trace_dir=tmp_path, redact_patterns=[r"password: .*"])
    result = agent.run_sync("show it")
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert trace.tool_results()[0].content == f"user: ann\n{MASK}\nport: 80"
    assert trace.output == MASK
    assert "hunter2" not in result.trace_path.read_text()  # type: ignore[union-attr]


def test_annotations_and_exports_written_later_mask_the_runs_secrets(tmp_path: Path) -> None:
    secret = "run-only-secret-42"
    model = ScriptedModel(["the answer"])
    agent = Agent(model, trace_dir=tmp_path, secrets=[secret])
    path = agent.run_sync("go").trace_path
    assert path is not None
    # add_feedback() is given no redactor: the secret the agent registered still applies.
    add_feedback(path, rating="down", comment=f"it leaked {secret}", correction=f"use {secret}")
    assert not recoverable(path, secret)
    assert read_trace(path).feedback()[0].comment == f"it leaked {MASK}"
    out = tmp_path / "sft.jsonl"
    with out.open("w") as file:
        assert write_jsonl(sft_export([read_trace(path)]), file, "sft") == 1
    assert not recoverable(out, secret)


def test_a_secret_in_a_tool_error_is_masked_in_the_log_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "log-secret-0123456789"

    @tool
    def connect(host: str) -> str:
        """Connect."""
        raise ConnectionError(f"cannot reach {host} with password {secret}")

    model = ScriptedModel([ModelResponse.tool_call("connect", {"host": "db"}), "unreachable"])
    agent = Agent(model, tools=[connect], trace_dir=tmp_path, secrets=[secret])
    caplog.set_level(logging.INFO, logger="agentloop")
    with pytest.raises(ToolExecutionError):
        agent.run_sync("connect")
    failed = [r for r in caplog.records if r.getMessage() == "run failed"]
    assert len(failed) == 1
    error = failed[0].__dict__["error"]
    assert "cannot reach db with password" in error  # the record carries the real error...
    assert secret not in error and MASK in error  # ...with the secret masked
    assert all(secret not in str(v) for r in caplog.records for v in r.__dict__.values())


def test_registered_secrets_reach_a_default_redactor() -> None:
    secret = "registered-for-the-process-1"
    assert Redactor()(secret) == secret  # not yet registered
    register_secrets(secret)
    assert Redactor()(f"a {secret} b") == f"a {MASK} b"
    assert Redactor(registered=False)(secret) == secret


def header() -> TraceHeader:
    return TraceHeader(run_id="r", created="now", task="t", agent={}, config_hash="h")


def call_event(raw: str) -> ToolCallRequested:
    return ToolCallRequested(
        run_id="r", step=0, seq=0, ts=0.0, call_id="c", name="f", raw_arguments=raw, valid=False
    )


# -- properties --------------------------------------------------------------------------------

RESULT_KEYS = '"type":"tool_result","content":"","error":null,"duration_ms":0.0,"truncated_from"'
RESULT_KEYS += ',"exception":null,"untrusted":true,"approval":null'
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
SECRET = st.text(st.characters(exclude_categories=("Cs",)), min_size=6, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=SECRET, before=TEXT, after=TEXT, pattern=st.sampled_from([None, ".*", ".", "a|"]))
def test_property_secret_never_recoverable_and_every_line_parses(
    secret: str,
    before: str,
    after: str,
    pattern: str | None,
) -> None:
    skeleton = header().model_dump_json() + call_event("").model_dump_json() + RESULT_KEYS
    assume(secret not in skeleton)  # a "secret" that spells the format's own field names
    value = before + secret + after
    redact = Redactor([secret], [pattern] if pattern else [], registered=False)
    # Outside pytest's temporary folder: these lines are not a run, and the corpus tests read
    # every trace the suite leaves there as one.
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / "t.jsonl"
    writer = TraceWriter(path, header(), redact)
    raws = [
        json.dumps({"v": value}),
        json.dumps({"v": value}, ensure_ascii=False),
        json.dumps(json.dumps({"v": value})),
        value,
    ]
    clean = ToolResultRecorded(run_id="r", step=0, seq=1, ts=0.0, call_id="c", name="f", content="")
    for raw in raws:  # lines kept for one write (redaction checks them together) ...
        event = call_event(raw).model_copy(update={"arguments": {"v": value, value: [value]}})
        writer.add(event)
        writer.add(clean)
    writer.flush()
    writer.write(clean.model_copy(update={"content": value}))  # ... and a line on its own
    writer.close()
    trace = read_trace(path)  # every line parses and validates
    assert len(trace.events) == 2 * len(raws) + 1
    alone = ToolResultRecorded.model_validate_json(redact.dumps(clean))  # as if on its own
    assert all(e == alone for e in trace.events[1::2])
    assert not recoverable(path, secret)
    folder.cleanup()
