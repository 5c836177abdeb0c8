"""Tool results as text: ``to_text`` renders anything deterministically and never raises;
``truncate`` caps the size with an exact ``[truncated: N of M chars]`` marker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import subprocess
import sys
import threading
import uuid
from pathlib import PurePosixPath
from typing import Any

import pydantic
import pytest

from agentloop.observations import MAX_DEPTH, Observation, to_text, truncate


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Mode(str, enum.Enum):  # noqa: UP042 (the mixin's str() is "Mode.FAST", on purpose)
    FAST = "fast"


class Speed(enum.StrEnum):
    SLOW = "slow"


class Item(pydantic.BaseModel):
    name: str
    price: float
    tags: list[str] = []


@dataclasses.dataclass
class Row:
    id: int
    when: dt.date
    lock: Any = None


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


# --- to_text ---------------------------------------------------------------------------------


def test_strings_pass_through() -> None:
    assert to_text("plain text\nwith lines") == "plain text\nwith lines"
    assert to_text("") == ""

    class Shouty(str):
        def __str__(self) -> str:
            return "SHOUT"

    assert to_text(Shouty("quiet")) == "quiet"


def test_none_and_scalars() -> None:
    assert to_text(None) == "null"
    assert to_text(3) == "3"
    assert to_text(2.5) == "2.5"
    assert to_text(True) == "true"


def test_pydantic_model() -> None:
    assert to_text(Item(name="pen", price=1.5)) == '{"name":"pen","price":1.5,"tags":[]}'
    assert to_text([Item(name="pen", price=math.nan)]) == (
        '[{"name": "pen", "price": null, "tags": []}]'
    )


def test_pydantic_model_with_unserializable_field_falls_back() -> None:
    class Holder(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque

    assert to_text(Holder(thing=Opaque())) == '{"thing": "Opaque()"}'


def test_dataclass_with_uncopyable_field() -> None:
    lock = threading.Lock()  # dataclasses.asdict would try to deep-copy it and fail
    text = to_text(Row(id=1, when=dt.date(2024, 5, 6), lock=lock))
    assert json.loads(text) == {"id": 1, "when": "2024-05-06", "lock": repr(lock)}


def test_dicts_and_lists_are_json() -> None:
    value = {"a": [1, 2, {"b": None}], "c": (True, "x"), 5: "five", "é": "ü"}
    assert to_text(value) == '{"a": [1, 2, {"b": null}], "c": [true, "x"], "5": "five", "é": "ü"}'


def test_sets_have_a_deterministic_order() -> None:
    assert to_text({10, 9, 1.5}) == "[1.5, 9, 10]"
    assert to_text(frozenset({"b", "a", "c"})) == '["a", "b", "c"]'
    assert to_text({"x", 2, (1, "a")}) == '[2, "x", [1, "a"]]'


@pytest.mark.slow
def test_set_order_does_not_depend_on_hash_seed() -> None:
    script = (
        "from agentloop.observations import to_text;"
        "print(to_text({'pear', 'apple', 'fig', 'kiwi', 'plum', 'lime', 'date'}))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert outputs == {'["apple", "date", "fig", "kiwi", "lime", "pear", "plum"]\n'}


def test_bytes_are_base64() -> None:
    assert to_text(b"\x00\xffhi") == '{"base64": "AP9oaQ=="}'
    assert to_text([bytearray(b"ab")]) == '[{"base64": "YWI="}]'


def test_dates_and_times_are_iso() -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    assert to_text(when) == '"2024-05-06T07:08:09+00:00"'
    assert to_text({"d": dt.date(2024, 1, 2), "t": dt.time(3, 4)}) == (
        '{"d": "2024-01-02", "t": "03:04:00"}'
    )


def test_enums_render_their_value() -> None:
    assert to_text(Color.RED) == "red"
    assert to_text(Level.HIGH) == "3"
    assert to_text(Mode.FAST) == "fast"
    assert to_text(Speed.SLOW) == "slow"
    assert to_text([Color.RED, Level.HIGH, Mode.FAST, Speed.SLOW]) == '["red", 3, "fast", "slow"]'
    assert to_text({Color.RED: 1}) == '{"red": 1}'


def test_non_finite_floats() -> None:
    assert to_text(math.nan) == '"nan"'
    assert to_text([math.inf, -math.inf, 1.0]) == '["inf", "-inf", 1.0]'
    assert to_text({math.nan: 1}) == '{"nan": 1}'


def test_paths_uuids_decimals_use_str() -> None:
    value = [PurePosixPath("/tmp/x"), uuid.UUID(int=1), decimal.Decimal("1.10")]
    assert to_text(value) == '["/tmp/x", "00000000-0000-0000-0000-000000000001", "1.10"]'


def test_custom_objects_use_repr() -> None:
    assert to_text(Opaque()) == '"Opaque()"'
    assert to_text({"o": Opaque()}) == '{"o": "Opaque()"}'
    assert to_text({(1, 2): "tuple key"}) == '{"[1, 2]": "tuple key"}'


def test_a_raising_repr_does_not_raise() -> None:
    assert to_text(BrokenRepr()) == '"<unrenderable BrokenRepr>"'
    assert to_text([BrokenRepr()]) == '["<unrenderable BrokenRepr>"]'


def test_cycles_are_marked() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert to_text(loop) == '[1, "<cycle>"]'
    shared = [1]
    assert to_text([shared, shared]) == "[[1], [1]]"  # repeated, not cyclic


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 100_000])
def test_deep_nesting_is_cut_at_max_depth(depth: int) -> None:
    deep: Any = "bottom"
    for _ in range(depth):
        deep = [deep]
    assert to_text(deep) == "[" * MAX_DEPTH + '"<too deep>"' + "]" * MAX_DEPTH


def test_nesting_up_to_max_depth_is_kept() -> None:
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert to_text(deep) == "[" * MAX_DEPTH + '"bottom"' + "]" * MAX_DEPTH


def test_output_is_deterministic() -> None:
    value = {"s": {3, 1, 2}, "m": Item(name="a", price=1), "b": b"x", "n": math.nan}
    assert to_text(value) == to_text(value)
    assert to_text(value) == (
        '{"s": [1, 2, 3], "m": {"name": "a", "price": 1.0, "tags": []}, '
        '"b": {"base64": "eA=="}, "n": "nan"}'
    )


# --- truncate --------------------------------------------------------------------------------


def test_no_cut_under_or_at_the_limit() -> None:
    assert truncate("short", 100) == ("short", None)
    assert truncate("x" * 100, 100) == ("x" * 100, None)
    assert truncate("", 0) == ("", None)


def test_cut_with_exact_marker() -> None:
    text = "".join(str(i % 10) for i in range(1000))
    out, original = truncate(text, 100)
    assert original == 1000
    assert len(out) <= 100
    assert out == text[:70] + "\n[truncated: 70 of 1000 chars]"
    assert len(out) == 100  # the room left by a shorter number is used


@pytest.mark.parametrize("length", [101, 150, 999, 1000, 12_345, 10**6])
@pytest.mark.parametrize("limit", [50, 100, 1000])
def test_marker_numbers_are_right(length: int, limit: int) -> None:
    text = "a" * length
    out, original = truncate(text, limit)
    if length <= limit:
        assert (out, original) == (text, None)
        return
    assert original == length
    assert len(out) <= limit
    kept = out.index("\n[truncated:")
    assert out[kept:] == f"\n[truncated: {kept} of {length} chars]"
    assert out[:kept] == text[:kept]
    assert len(out) == limit  # no room wasted (every limit here fits the marker)


def test_limit_smaller_than_the_marker_still_holds() -> None:
    out, original = truncate("x" * 500, 10)
    assert original == 500
    assert out == "\n[truncate"
    with pytest.raises(ValueError, match="limit must be >= 0"):
        truncate("x", -1)


def test_ten_megabytes_are_cut() -> None:
    text = "y" * (10 * 1024 * 1024)
    out, original = truncate(to_text(text), 20_000)
    assert original == 10 * 1024 * 1024
    assert len(out) <= 20_000
    assert out.endswith(f"[truncated: {out.index(chr(10))} of {10 * 1024 * 1024} chars]")


def test_observation() -> None:
    ok = Observation(content="fine")
    bad = Observation(content="Error: x", error="timeout")
    assert not ok.is_error
    assert bad.is_error
    with pytest.raises(pydantic.ValidationError):
        Observation(content="x", error="no_such_kind")  # type: ignore[arg-type]
