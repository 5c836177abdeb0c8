"""Grounding: the passages a run retrieved, by the source id each was tagged with, and the
citations an answer makes to them.

The retrieval tool (``agentloop.toolpack.retrieve``) returns each passage after a
``[source: <path>#<n>]`` tag and an agent cites a passage by copying its tag. The ``citations``
scorer checks an answer's tags against what the run retrieved; the ``grounded`` rubric shows
the judge the passages themselves.
"""

from __future__ import annotations

import re

from agentloop.trace import Trace

CITATION = re.compile(r"\[source: ([^\]\s]+#\d+)\]")
"""A source id as the retrieval tool tags each passage it returns and as an answer cites it:
``[source: notes/otters.md#3]`` (``agentloop.toolpack.retrieve`` writes the same tag)."""


def retrieved_passages(trace: Trace, tool: str | None = None) -> dict[str, str]:
    """Every passage the run's tools returned under a ``[source: id]`` tag, by source id
    (``tool``: only that tool's results), in the order first retrieved."""
    passages: dict[str, str] = {}
    for result in trace.tool_results():
        if result.error is not None or (tool is not None and result.name != tool):
            continue
        parts = CITATION.split(result.content)
        # split gives [before, id1, text1, id2, text2, ...]
        for source, text in zip(parts[1::2], parts[2::2], strict=True):
            passages.setdefault(source, text.strip())
    return passages
