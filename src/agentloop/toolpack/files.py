"""files: read, list and write text files inside one root directory.

``make_file_tools(root)`` returns the three tools bound to ``root``. The module-level tools
(``read_file``, ``list_dir``, ``write_file``, what ``--tools tools/`` loads) are bound to the
directory named by the ``AGENTLOOP_FILES_ROOT`` environment variable, or else to the current
directory, as it is when this module is loaded.

Every path goes through ``agentloop.safety.safe_path``: ``..``, absolute paths, links leading
outside the root, NUL bytes and backslashes are refused with one error, which the model sees.
Hidden files and directories (``.env``, ``.git/``) are refused and left out of listings unless
the root is made with ``allow_hidden=True``. Only regular files are read or written, and they are
opened without blocking, so a FIFO or a device in the root cannot hang the run.
Writing requires approval (``requires_approval=True``): without an approver it is denied.
Files are opened without following a symlink in the last component, so a link swapped in after
the check is refused too; a directory above it swapped for a link in that instant is not
covered (give agents a root no one else writes to).
"""

from __future__ import annotations

import os
from pathlib import Path

from agentloop import Tool, ToolRetry, tool
from agentloop.errors import UserError
from agentloop.regular_files import NotRegularFile, open_regular
from agentloop.safety import safe_path

ROOT_ENV = "AGENTLOOP_FILES_ROOT"
MAX_READ_BYTES = 200_000
MAX_WRITE_CHARS = 1_000_000
MAX_ENTRIES = 500


def make_file_tools(
    root: str | os.PathLike[str],
    *,
    max_read_bytes: int = MAX_READ_BYTES,
    max_write_chars: int = MAX_WRITE_CHARS,
    allow_hidden: bool = False,
) -> list[Tool]:
    """``read_file``, ``list_dir`` and ``write_file`` confined to ``root`` (which must exist);
    hidden files (names starting with ``.``) only with ``allow_hidden=True``."""
    base = Path(root).resolve()
    if not base.is_dir():
        raise UserError(f"the files root {str(root)!r} is not a directory")

    @tool(idempotent=True)
    def read_file(path: str) -> str:
        """Read a UTF-8 text file.

        Args:
            path: The file's path, relative to the files root.
        """
        target = safe_path(base, path, allow_hidden=allow_hidden)
        if not target.is_file():
            raise ToolRetry(f"no file {path!r}; call list_dir to see what exists")
        fd = _open_regular(target, os.O_RDONLY, path)
        with os.fdopen(fd, "rb") as file:
            data = file.read(max_read_bytes + 1)
        try:
            text = data[:max_read_bytes].decode("utf-8")
        except UnicodeDecodeError:
            if len(data) <= max_read_bytes:
                raise ToolRetry(f"{path!r} is not a UTF-8 text file") from None
            text = data[:max_read_bytes].decode("utf-8", errors="ignore")  # cut mid-character
        if len(data) > max_read_bytes:
            size = target.stat().st_size
            text += f"\n[truncated: read the first {max_read_bytes} of {size} bytes]"
        return text

    @tool(idempotent=True)
    def list_dir(path: str = ".") -> str:
        """List a directory: one entry per line, directories end with "/".

        Args:
            path: The directory, relative to the files root ("." for the root itself).
        """
        target = safe_path(base, path, allow_hidden=allow_hidden)
        if not target.is_dir():
            raise ToolRetry(f"no directory {path!r}; call list_dir('.') to see the root")
        entries = sorted(
            (e for e in os.scandir(target) if allow_hidden or not e.name.startswith(".")),
            key=lambda e: e.name,
        )
        lines = [e.name + ("/" if _is_dir(e) else "") for e in entries[:MAX_ENTRIES]]
        if len(entries) > MAX_ENTRIES:
            lines.append(f"[truncated: {MAX_ENTRIES} of {len(entries)} entries]")
        return "\n".join(lines) or "(empty directory)"

    @tool(requires_approval=True)
    def write_file(path: str, content: str) -> str:
        """Write a UTF-8 text file, replacing it if it exists (needs the user's approval).

        Args:
            path: The file's path, relative to the files root; missing directories are created.
            content: The complete new text of the file.
        """
        if len(content) > max_write_chars:
            raise ToolRetry(f"content is longer than {max_write_chars} characters")
        target = safe_path(base, path, allow_hidden=allow_hidden)
        if target == base or target.is_dir():
            raise ToolRetry(f"{path!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_regular(target, os.O_WRONLY | os.O_CREAT, path)
        os.ftruncate(fd, 0)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content)
        return f"wrote {len(content)} characters to {path!r}"

    return [read_file, list_dir, write_file]


def _open_regular(target: Path, flags: int, path: str) -> int:
    """Open ``target`` without following a final symlink and without blocking (a FIFO would
    wait for a writer forever), and only if it is a regular file; return the descriptor in
    blocking mode."""
    try:
        return open_regular(target, flags | os.O_NOFOLLOW)
    except NotRegularFile:
        raise ToolRetry(f"{path!r} is not a regular file") from None
    except OSError as exc:
        raise ToolRetry(f"cannot open {path!r}: {exc.strerror}") from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop or a vanished entry
        return False


read_file, list_dir, write_file = make_file_tools(os.environ.get(ROOT_ENV) or os.getcwd())
