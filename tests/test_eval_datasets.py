"""Datasets: JSONL cases, and errors that name the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop.evals import Case, Dataset
from agentloop.evals.datasets import DatasetError

REPO = Path(__file__).resolve().parents[1]


def test_cases_read_from_jsonl(tmp_path: Path) -> None:
    file = tmp_path / "d.jsonl"
    file.write_text(
        '{"id": "a", "input": "2+2?", "expected": 4, "metadata": {"k": 1}}\n'
        "\n# a comment line\n"
        '{"id": 7, "input": "x", "scorers": {"numeric": {"tolerance": 0.5}}}\n'
    )
    data = Dataset.from_jsonl(file)
    assert [c.id for c in data] == ["a", "7"] and len(data) == 2 and data.name == "d"
    assert data[0].expected == 4 and data[0].metadata == {"k": 1}
    assert data.get("7") == Case(id="7", input="x", scorers={"numeric": {"tolerance": 0.5}})
    copy = tmp_path / "copy.jsonl"
    data.to_jsonl(copy)
    assert list(Dataset.from_jsonl(copy)) == list(data)
    assert Dataset.from_jsonl(copy).digest == data.digest


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "b", "input": "y"', "d.jsonl:3: not valid JSON"),
        ('["b", "y"]', "d.jsonl:3: a case must be a JSON object, not an array"),
        ('{"id": "b"}', "d.jsonl:3: field 'input': Field required"),
        ('{"id": "b", "input": "y", "expect": 1}', "d.jsonl:3: field 'expect'"),
        ('{"id": "", "input": "y"}', "d.jsonl:3: field 'id'"),
        ('{"id": "a", "input": "y"}', "d.jsonl:3: duplicate case id 'a' (first on line 1)"),
        ('{"id": "b", "input": "y", "scorers": {"numeric": 1}}', "field 'scorers.numeric'"),
    ],
)
def test_a_malformed_case_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    file = tmp_path / "d.jsonl"
    file.write_text('{"id": "a", "input": "x"}\n\n' + line + "\n")
    with pytest.raises(DatasetError) as caught:
        Dataset.from_jsonl(file)
    assert message in str(caught.value)


def test_missing_or_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read dataset"):
        Dataset.from_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n# nothing\n")
    with pytest.raises(DatasetError, match="has no cases"):
        Dataset.from_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="two cases with id 'x'"):
        Dataset([Case(id="x", input="1"), Case(id="x", input="2")])


def test_example_datasets_parse() -> None:
    for file in sorted((REPO / "datasets").glob("*.jsonl")):
        assert len(Dataset.from_jsonl(file)) >= 5, file
