"""Redaction: secrets never reach a trace, a log line or an export.

A ``Redactor`` works on values before they are serialized: every string leaf of an event (a
tool's raw argument text and its parsed arguments alike) is masked on its own, so a pattern can
never eat a quote or a brace of the line around it. It removes exact known secret values in
every form a value takes on disk (as is, JSON-escaped once or several times, ``\\u``-escaped
inside JSON text), common secret shapes (``sk-...`` keys, ``Bearer`` tokens), values under
secret-sounding keys (``"api_key": "..."``, ``?key=...``), plus any patterns the user adds.

Secrets reach a redactor three ways: given to it (``Redactor(secrets=...)``, what
``Agent(secrets=...)`` does), or registered for the whole process with ``register_secrets``
(``Agent`` registers its secrets and its model's key there), which every redactor consults. So a
writer that knows nothing of the run, such as ``annotate``, ``add_feedback`` or an export in the
same process, still masks the run's secrets; a new process (the CLI) registers the API key from
its environment. ``redact_log_event`` is the same redactor as a structlog processor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from pydantic import BaseModel

MASK = "[REDACTED]"

_SECRET_KEYS = (
    r"api_key|apikey|api-key|x-api-key|authorization|password|passwd|secret|client_secret|"
    r"access_token|refresh_token|auth_token"
)
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"\bsk-[A-Za-z0-9_\-]{16,}",
    r"\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    rf"\\?[\"'](?:{_SECRET_KEYS})\\?[\"']\s*:\s*\\?[\"'](?P<secret>[^\"'\\]+)",
    r"[?&](?:key|api_key|apikey|token|access_token|password|secret)=(?P<secret>[^&\s\"'\\]+)",
    rf"\b(?:{_SECRET_KEYS}|token)\s*=\s*\\?[\"']?(?P<secret>[^&\s\"'\\,;)]+)",
)
"""Shapes redacted by default (case-insensitive): OpenAI-style keys, bearer tokens, values under
secret-named keys in JSON text (also JSON inside a JSON string) or Python reprs, and secret query
parameters and assignments (``api_key='...'``). A pattern with a group named ``secret`` masks
only that group."""

_SECRET_KEY_RE = re.compile(rf"^(?:{_SECRET_KEYS})\Z", re.IGNORECASE)
"""A string value under a key with one of these names is masked whole."""

_FORMAT_KEYS = frozenset(
    {
        "format",
        "type",
        "role",
        "run_id",
        "call_id",
        "created",
        "config_hash",
        "prompt_hash",
        "agentloop_version",
        "error",
        "error_type",
        "reason",
        "rating",
        "approval",
        "source",
        "finish_reason",
        "protocol",
    }
)
"""Values the trace format itself needs (identifiers, kinds, fixed vocabularies): written as
they are outside free-form data, so no pattern can make an event unreadable."""

_FREE_FORM_KEYS = frozenset({"arguments", "metadata", "extra", "parsed", "detail"})
"""Dicts under these keys hold data from outside (a model's arguments, a user's metadata), so
their keys are masked too; elsewhere keys are the trace format's own field names."""

# Text that any default pattern needs, lower-cased. Most values hold none of it, and a few
# substring checks cost far less than running the patterns (a trace writes many lines).
_TRIGGERS = (
    "sk-",
    "bearer",
    "key=",
    "key =",
    "token=",
    "token =",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "passw",
    "secret",
    "access_token",
    "refresh_token",
    "auth_token",
)
_ROOTS = ("sk-", "bearer", "key", "token", "authorization", "passw", "secret")
"""A part of every trigger: text with none of these holds no trigger, found in half the scans
(the check runs on every trace line)."""
_BY_ROOT = tuple(
    (root, () if root in _TRIGGERS else tuple(t for t in _TRIGGERS if root in t)) for root in _ROOTS
)
"""Each root with the triggers that hold it (none when the root is a trigger itself): a root
found (``token`` is in every model response, as ``input_tokens``) sends only its own triggers
to be looked for, not all of them."""
_MIN_SECRET = 6
_ESCAPE_LEVELS = 3
_registered: set[str] = set()
_generation = 0


def register_secrets(*values: str) -> None:
    """Mask these values in everything this process writes from now on: every ``Redactor``
    (the default ones of ``annotate``, ``add_feedback``, exports, the log processor included)
    consults this set. ``Agent`` registers its ``secrets`` and its model's API key here."""
    global _generation
    new = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET} - _registered
    if new:
        _registered.update(new)
        _generation += 1


def registered_secrets() -> frozenset[str]:
    """The secrets registered for this process (to check what is masked, never to print)."""
    return frozenset(_registered)


class Redactor:
    """Masks known secret values and secret-shaped text in values: strings (``__call__``),
    JSON-like structures (``value``) and pydantic models serialized to one JSON line
    (``dumps``)."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        defaults: bool = True,
        registered: bool = True,
    ) -> None:
        self._own: list[str] = []
        self._registered = registered
        self._generation = -1
        self._forms: list[str] = []
        self._canon: list[str] = []
        for secret in secrets:
            self.add_secret(secret)
        self._defaults = (
            [re.compile(p, re.IGNORECASE) for p in DEFAULT_PATTERNS] if defaults else []
        )
        self._patterns = [re.compile(p) for p in patterns]

    def add_secret(self, secret: str) -> None:
        """Mask this exact value (in every escaped form) from now on; short values (under six
        characters) are ignored, since masking them would garble ordinary text."""
        if len(secret) >= _MIN_SECRET and secret not in self._own:
            self._own.append(secret)
            self._generation = -1

    # -- text --------------------------------------------------------------------------------

    def __call__(self, text: str) -> str:
        """``text`` with secrets masked: one value (a log message, an answer, a tool result)."""
        return self._text(text, depth=0)

    def _text(self, text: str, depth: int) -> str:
        forms, canon = self._secret_forms()
        for form in forms:
            if form in text:
                text = text.replace(form, MASK)
        if "\\" in text and depth < 8:
            text = self._nested_json(text, depth)
        if self._defaults and _may_hold_secret(text):
            for pattern in self._defaults:
                text = pattern.sub(_mask, text)
        for pattern in self._patterns:
            text = pattern.sub(_mask, text)
        if "\\" in text and any(c in text.replace("\\", "") for c in canon):
            return MASK  # an escaped form no replacement above caught: mask it all
        if any(f in text for f in forms):
            return MASK  # a mask next to text that spells the secret again
        return text

    def settled(self, text: str) -> int:
        """For text still streaming in (already passed through this redactor): how much of
        its start can be shown now. A secret may continue in the text to come, so this stops
        before the last word, before the start of any known secret the text ends with, and
        before the last line if it mentions a secret-shaped key (``password: ...``)."""
        line_start = text.rfind("\n") + 1
        if (self._defaults and _may_hold_secret(text[line_start:])) or self._patterns:
            end = line_start
        else:
            end = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
        for secret in self._secret_forms()[0]:
            for size in range(min(len(secret) - 1, len(text)), 0, -1):
                if text.endswith(secret[:size]):
                    end = min(end, len(text) - size)
                    break
        return end

    def _nested_json(self, text: str, depth: int) -> str:
        """JSON text inside a value (a model's raw arguments) can spell a secret with escapes
        (``\\u0073``); decode it, redact its values, and re-encode it if anything changed."""
        start = text.lstrip()[:1]
        if start not in ("{", "[", '"'):
            return text
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return text
        redacted = self._value(data, depth + 1, free=True)
        if redacted == data:
            return text
        return json.dumps(redacted, ensure_ascii=False)

    # -- structures --------------------------------------------------------------------------

    def value(self, data: Any) -> Any:
        """A copy of a JSON-like structure with every string leaf redacted; a string value under
        a secret-named key (``api_key``, ``password``...) is masked whole."""
        return self._value(data, 0, free=False)

    def _value(self, data: Any, depth: int, free: bool) -> Any:
        if isinstance(data, str):
            return self._text(data, depth)
        if isinstance(data, Mapping):
            out: dict[Any, Any] = {}
            for key, item in data.items():
                if isinstance(item, str) and isinstance(key, str):
                    if not free and key in _FORMAT_KEYS:
                        out[key] = item
                        continue
                    if _SECRET_KEY_RE.match(key):
                        out[key] = MASK if item else item
                        continue
                name = self._text(key, depth) if free and isinstance(key, str) else key
                out[name] = self._value(item, depth, free or key in _FREE_FORM_KEYS)
            return out
        if isinstance(data, list | tuple):
            return [self._value(item, depth, free) for item in data]
        return data

    def dumps(self, model: BaseModel) -> str:
        """``model`` as one redacted JSON line (what a trace writer writes).

        Most events hold nothing secret-like, so the line pydantic serializes is checked first
        with a few substring tests; only a line that may hold a secret is decoded, redacted
        value by value and encoded again."""
        return self._line(model.model_dump_json())

    def lines(self, lines: Sequence[str]) -> str:
        """JSON lines as pydantic serialized them, redacted, each ending in a newline (what a
        trace writer appends in one write). They are checked together first: a secret-like
        match anywhere sends each line through ``dumps``'s own check."""
        text = "\n".join(lines)
        if not self._is_clean(text):
            text = "\n".join(map(self._line, lines))
        return text + "\n"

    def _line(self, line: str) -> str:
        if self._is_clean(line):
            return line
        return json.dumps(self.value(json.loads(line)), ensure_ascii=False, separators=(",", ":"))

    def _is_clean(self, line: str) -> bool:
        """True when no value of this line can hold a secret: no user patterns to run, no
        default trigger, no secret in any escaped form, no ``\\u``/``\\/`` escape inside a value
        (JSON text a model wrote, which could spell a secret indirectly)."""
        if self._patterns:
            return False
        if self._defaults and _may_hold_secret(line):
            return False
        forms, canon = self._secret_forms()
        if "\\" in line:
            if "\\\\u" in line or "\\\\/" in line:
                return False
            bare = line.replace("\\", "")
            return not any(c in bare for c in canon)
        return not any(f in line for f in forms)

    def _secret_forms(self) -> tuple[list[str], list[str]]:
        """Every on-disk form of the known secrets (longest first), and each secret's
        backslash-free form (the same at every escaping level)."""
        if self._generation != (_generation if self._registered else 0):
            secrets = {*self._own, *(_registered if self._registered else ())}
            forms: set[str] = set()
            canon: set[str] = set()
            for secret in secrets:
                form = secret
                for _ in range(_ESCAPE_LEVELS + 1):
                    forms.add(form)
                    forms.add(json.dumps(form)[1:-1])
                    form = json.dumps(form, ensure_ascii=False)[1:-1]
                canon.add(json.dumps(secret, ensure_ascii=False)[1:-1].replace("\\", ""))
            self._forms = sorted(forms, key=len, reverse=True)
            self._canon = sorted(c for c in canon if c)
            self._generation = _generation if self._registered else 0
        return self._forms, self._canon


_default: Redactor | None = None


def default_redactor() -> Redactor:
    """The process's redactor: default patterns and the registered secrets."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default


def redact_log_event(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: every value of a log entry through a redactor (the run's, bound
    as ``_redactor``, else the process's), before any renderer sees it."""
    redactor = event_dict.pop("_redactor", None)
    if not isinstance(redactor, Redactor):
        redactor = default_redactor()
    for key, item in list(event_dict.items()):
        if key in ("exc_info", "stack_info"):
            continue
        if isinstance(item, str | list | tuple | dict):
            event_dict[key] = redactor.value(item)
        elif not isinstance(item, int | float | bool | type(None)):
            event_dict[key] = redactor(str(item))
    return event_dict


def _may_hold_secret(text: str) -> bool:
    """Whether ``text`` holds one of the triggers (any case)."""
    lowered = text.lower()
    for root, triggers in _BY_ROOT:
        if root in lowered and (not triggers or any(map(lowered.__contains__, triggers))):
            return True
    return False


def _mask(match: re.Match[str]) -> str:
    """Mask the ``secret`` group if the pattern has one (keeping the key name), else all."""
    if "secret" not in match.re.groupindex:
        return MASK
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + MASK + whole[end - offset :]
