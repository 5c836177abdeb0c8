"""Text made safe to print on a terminal: control characters shown, never obeyed.

Model output, tool results and traces may hold escape sequences (``\\x1b[2J``), carriage
returns, bidirectional overrides or other invisible characters that would rewrite what a person
sees. ``escape`` writes each such character as a visible escape (``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations

import unicodedata

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Controls, format characters (bidi overrides, zero-width), surrogates, private use,
unassigned, and line/paragraph separators."""


def escape(text: str, *, keep: str = "\n\t") -> str:
    """``text`` with every control, format, separator and unassigned character written as an
    escape; the characters in ``keep`` (newline and tab by default) stay as they are."""
    if text.isprintable():  # the common case: nothing to do
        return text
    out: list[str] = []
    for char in text:
        if char in keep or unicodedata.category(char) not in _UNSAFE_CATEGORIES:
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)
