"""Redaction: secrets never reach a trace, a log line or an export.

A ``Redactor`` is a plain callable ``str -> str``, applied to each serialized trace line and
log entry. It removes exact known secret values (API keys, anything passed as a secret), common
secret shapes (``sk-...`` keys, ``Bearer`` tokens) and values under secret-sounding keys
(``"api_key": "..."``, ``?key=...``), plus any patterns the user adds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

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
secret-named keys in JSON (also JSON inside a JSON string) or Python reprs, and secret query
parameters and assignments (``api_key='...'``). A pattern with a group named ``secret`` masks
only that group."""

# Text that any default pattern needs, lower-cased. Most lines hold none of it, and a few
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


class Redactor:
    """Masks known secret values and secret-shaped text."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        patterns: Iterable[str] = (),
        *,
        defaults: bool = True,
    ) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add_secret(secret)
        self._defaults = (
            [re.compile(p, re.IGNORECASE) for p in DEFAULT_PATTERNS] if defaults else []
        )
        self._patterns = [re.compile(p) for p in patterns]

    def add_secret(self, secret: str) -> None:
        """Mask this exact value (and its JSON-escaped form) from now on; short values (under
        six characters) are ignored, since masking them would garble ordinary text."""
        if len(secret) < 6:
            return
        escaped = json.dumps(secret)[1:-1]
        for form in {secret, escaped}:
            if form not in self._secrets:
                self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._defaults and _may_hold_secret(text):
            for pattern in self._defaults:
                text = pattern.sub(_mask, text)
        for pattern in self._patterns:
            text = pattern.sub(_mask, text)
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
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(text)), 0, -1):
                if text.endswith(secret[:size]):
                    end = min(end, len(text) - size)
                    break
        return end


def _may_hold_secret(text: str) -> bool:
    return any(map(text.lower().__contains__, _TRIGGERS))


def _mask(match: re.Match[str]) -> str:
    """Mask the ``secret`` group if the pattern has one (keeping the key name), else all."""
    if "secret" not in match.re.groupindex:
        return MASK
    start, end = match.span("secret")
    whole = match.group(0)
    offset = match.start()
    return whole[: start - offset] + MASK + whole[end - offset :]
