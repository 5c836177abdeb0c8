"""An eval that runs against the fake server from any process: an agent file with an ``add``
tool (and a ``crash`` tool that kills its process), a dataset of "add A B" cases, and the
server's answers, which depend only on each request (so the order cases run in, and which
process runs them, change nothing)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentloop.evals import EvalRun
from fakes.openai_server import RecordedRequest, Reply, answer, tool_call, tool_calls

TOOLS = '''
import os

from agentloop import tool


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def crash() -> str:
    """Stop this process at once, as a segfault or the OOM killer would."""
    os._exit(1)
'''
WRONG_EVERY = 7
"""Cases whose number is a multiple of this get a wrong answer (so scores differ by case)."""


def agent_file(folder: Path, base_url: str) -> Path:
    (folder / "tools.py").write_text(TOOLS)
    file = folder / "adder.toml"
    file.write_text(
        'model = "openai:fake-model"\ninstructions = "Add the numbers."\n'
        'tools = ["tools.py"]\n[limits]\nmax_steps = 4\n'
        f'[model_options]\nbase_url = "{base_url}"\nmax_retries = 0\n'
    )
    return file


def dataset(folder: Path, n: int, crash: frozenset[int] = frozenset()) -> Path:
    lines = []
    for i in range(n):
        verb = "crash" if i in crash else "add"
        lines.append({"id": f"c{i:04d}", "input": f"{verb} {i} {i * 3}", "expected": i * 4})
    file = folder / "cases.jsonl"
    file.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return file


def replier(delay: float) -> Any:
    """The server's answer to any request of these cases, after ``delay`` seconds."""

    def reply(request: RecordedRequest) -> Reply:
        messages = request.messages
        task = next(m["content"] for m in messages if m["role"] == "user")
        n, m = (int(x) for x in re.findall(r"\d+", task))
        if messages[-1]["role"] != "tool":
            name, args = ("crash", {}) if task.startswith("crash") else ("add", {"a": n, "b": m})
            return replace(tool_calls(tool_call(name, args, id=f"call_{n}")), delay=delay)
        wrong = n % WRONG_EVERY == 0 and n > 0
        return answer(f"The answer is {n + m + (1 if wrong else 0)}", delay=delay)

    return reply


def outcomes(run: EvalRun) -> dict[str, tuple[str, dict[str, float]]]:
    """Each case's status and score values: what two backends must agree on."""
    return {r.case_id: (r.status, {k: s.value for k, s in r.scores.items()}) for r in run.records}


def worker_pids(below: int) -> list[int]:
    """Processes of agentloop's Ray eval workers that descend from process ``below``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if command.startswith("ray::EvalWorker") and _descends(int(entry.name), below):
            found.append(int(entry.name))
    return sorted(found)


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def kill(pid: int) -> None:
    os.kill(pid, 9)
