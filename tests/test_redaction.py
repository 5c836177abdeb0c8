"""Redaction: secret values and shapes are masked; ordinary text is left alone."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentloop.redaction import _ROOTS, _TRIGGERS, MASK, Redactor

_TRIGGERS_AND_ROOTS = sorted({*_TRIGGERS, *_ROOTS, *(t[:-1] for t in _TRIGGERS)})


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("key sk-abcdefghijklmnop0123 here", "sk-abcdefghijklmnop0123"),
        ("Authorization: Bearer abc.def-ghi_jkl", "abc.def-ghi_jkl"),
        ('{"api_key": "plainvalue1"}', "plainvalue1"),
        ('{"Authorization":"Basic xyz123"}', "Basic xyz123"),
        (json.dumps({"raw": json.dumps({"password": "pa55word!"})}), "pa55word!"),
        ("GET https://h/x?key=AIzaSyQ123&q=1", "AIzaSyQ123"),
        ("client(api_key='hunter2hunter2')", "hunter2hunter2"),
        ("export ACCESS_TOKEN = tok3nvalue", "tok3nvalue"),
        ("{'secret': 'in-a-python-repr'}", "in-a-python-repr"),
    ],
)
def test_secret_shapes_are_masked(text: str, secret: str) -> None:
    masked = Redactor()(text)
    assert secret not in masked
    assert MASK in masked


def test_exact_secrets_and_their_json_escaped_form() -> None:
    secret = 'we"ird\\value'
    redact = Redactor([secret, "short"])
    assert redact(f"x {secret} y") == f"x {MASK} y"
    assert redact(json.dumps({"v": secret})) == json.dumps({"v": MASK})
    assert redact("short stays") == "short stays"  # under six characters: not masked


@pytest.mark.parametrize(
    "text",
    [
        '{"usage": {"input_tokens": 12, "output_tokens": 3}}',
        "a monkey=banana, the key idea, a task-list",
        "sk-short",
        '{"max_tokens": 100, "name": "secretary"}',
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor()(text) == text


def test_user_patterns_and_no_defaults() -> None:
    redact = Redactor(patterns=[r"ACME-(?P<secret>\d{6})"], defaults=False)
    assert redact("id ACME-123456, sk-abcdefghijklmnop0123") == (
        f"id ACME-{MASK}, sk-abcdefghijklmnop0123"
    )


def test_every_trigger_holds_a_root_so_the_quick_check_never_skips_one() -> None:
    """``_may_hold_secret`` looks for the roots first and returns early without one: a trigger
    added without a root would never be looked for."""
    from agentloop.redaction import _ROOTS, _TRIGGERS, _may_hold_secret

    for trigger in _TRIGGERS:
        assert any(root in trigger for root in _ROOTS), trigger
        assert _may_hold_secret(f"plain text, then {trigger.upper()} and more")
    assert not _may_hold_secret('{"type":"tool_result","content":"42","name":"add"}')


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*_TRIGGERS_AND_ROOTS, "input_tokens", "KEY", " = ", "=", "_", "-", "x", "\n", "é"]
        ),
        max_size=8,
    ).map("".join)
)
def test_the_quick_check_finds_a_trigger_exactly_when_one_is_there(text: str) -> None:
    """Grouping the triggers by root changes how much is scanned, never the answer: the
    check says yes exactly when some trigger is in the text, in any case."""
    from agentloop.redaction import _TRIGGERS, _may_hold_secret

    for form in (text, text.upper()):
        assert _may_hold_secret(form) == any(t in form.lower() for t in _TRIGGERS), form
