"""The files tools and safe_path: every way out of the root is refused with the same error."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentloop import Tool, ToolRetry
from agentloop.errors import UserError
from agentloop.safety import HiddenPath, UnsafePath, safe_path
from toolpack import load

files = load("files")


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """tmp/data (the root, with a file, a subfolder and links) beside tmp/data-evil."""
    root = tmp_path / "data"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("alpha\n")
    (root / "inside-link.txt").symlink_to(root / "notes" / "a.txt")
    evil = tmp_path / "data-evil"
    evil.mkdir()
    (evil / "secret.txt").write_text("SECRET")
    (tmp_path / "outside.txt").write_text("SECRET")
    (root / "evil-dir").symlink_to(evil, target_is_directory=True)
    (root / "evil-file.txt").symlink_to(evil / "secret.txt")
    (root / "loop").symlink_to(root / "loop")
    return root


def tools_for(root: Path) -> dict[str, Tool]:
    return {t.name: t for t in files.make_file_tools(root)}


ESCAPES = [
    "../outside.txt",
    "../../etc/passwd",
    "notes/../../outside.txt",
    "/etc/passwd",
    "//etc/passwd",
    "../data-evil/secret.txt",  # sibling-prefix root
    "evil-dir/secret.txt",  # symlinked directory to the sibling
    "evil-file.txt",  # symlinked file to outside
    "..\\outside.txt",
    "notes\\..\\..\\outside.txt",
    "notes/a.txt\x00.png",
    "~/.bashrc",
    "loop",
]


@pytest.mark.parametrize("user_path", ESCAPES)
def test_safe_path_refuses_every_escape_with_the_same_error(layout: Path, user_path: str) -> None:
    with pytest.raises(UnsafePath) as caught:
        safe_path(layout, user_path)
    assert type(caught.value) is UnsafePath
    assert caught.value.message == UnsafePath(user_path).message
    assert str(layout) not in caught.value.message  # the root's location is not revealed


def test_the_absolute_path_of_a_file_inside_the_root_is_refused_too(layout: Path) -> None:
    with pytest.raises(UnsafePath):
        safe_path(layout, str(layout / "notes" / "a.txt"))


def test_safe_path_allows_plain_paths_and_links_that_stay_inside(layout: Path) -> None:
    assert safe_path(layout, "notes/a.txt") == layout / "notes" / "a.txt"
    assert safe_path(layout, "./notes/./a.txt") == layout / "notes" / "a.txt"
    assert safe_path(layout, "inside-link.txt") == layout / "notes" / "a.txt"
    assert safe_path(layout, "new/file.txt") == layout / "new" / "file.txt"
    assert safe_path(layout, ".") == layout.resolve()
    assert safe_path(layout, "") == layout.resolve()


def test_the_containment_check_compares_components_not_prefixes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "data-evil").mkdir()
    (root / "x").symlink_to(tmp_path / "data-evil", target_is_directory=True)
    assert str(tmp_path / "data-evil").startswith(str(root))  # a prefix check would pass it
    with pytest.raises(UnsafePath):
        safe_path(root, "x/anything.txt")


@pytest.mark.parametrize("user_path", ESCAPES)
def test_read_file_refuses_escapes(layout: Path, user_path: str) -> None:
    with pytest.raises(UnsafePath):
        tools_for(layout)["read_file"](path=user_path)


@pytest.mark.parametrize("user_path", ["..", "../data-evil", "evil-dir", "/", "..\\"])
def test_list_dir_refuses_escapes(layout: Path, user_path: str) -> None:
    with pytest.raises(UnsafePath):
        tools_for(layout)["list_dir"](path=user_path)


@pytest.mark.parametrize(
    "user_path",
    [
        "../outside.txt",
        "../data-evil/new.txt",
        "evil-dir/new.txt",  # writing through a symlinked directory to a new file
        "evil-dir/secret.txt",
        "evil-file.txt",
        "/tmp/new.txt",
        "..\\new.txt",
        "new\x00.txt",
    ],
)
def test_write_file_refuses_escapes_and_writes_nothing(layout: Path, user_path: str) -> None:
    before = {p: p.read_bytes() for p in layout.parent.rglob("*") if p.is_file()}
    with pytest.raises(UnsafePath):
        tools_for(layout)["write_file"](path=user_path, content="PWNED")
    after = {p: p.read_bytes() for p in layout.parent.rglob("*") if p.is_file()}
    assert after == before


def test_read_list_and_write_inside_the_root(layout: Path) -> None:
    tools = tools_for(layout)
    assert tools["read_file"](path="notes/a.txt") == "alpha\n"
    assert (
        tools["write_file"](path="out/b.txt", content="béta") == "wrote 4 characters to 'out/b.txt'"
    )
    assert (layout / "out" / "b.txt").read_text(encoding="utf-8") == "béta"
    listing = tools["list_dir"](path=".").splitlines()
    assert "notes/" in listing and "out/" in listing and "inside-link.txt" in listing
    assert tools["list_dir"](path="notes") == "a.txt"


def test_only_writing_requires_approval(layout: Path) -> None:
    tools = tools_for(layout)
    assert tools["write_file"].requires_approval
    assert not tools["read_file"].requires_approval and not tools["list_dir"].requires_approval


def test_mistakes_are_observations_that_do_not_reveal_the_root(layout: Path) -> None:
    tools = tools_for(layout)
    with pytest.raises(ToolRetry, match=r"no file 'missing\.txt'") as caught:
        tools["read_file"](path="missing.txt")
    assert str(layout) not in caught.value.message
    with pytest.raises(ToolRetry, match="no directory"):
        tools["list_dir"](path="notes/a.txt")
    with pytest.raises(ToolRetry, match="is a directory"):
        tools["write_file"](path="notes", content="x")
    (layout / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ToolRetry, match="not a UTF-8 text file"):
        tools["read_file"](path="blob.bin")


def test_reads_and_writes_are_capped(layout: Path) -> None:
    (layout / "big.txt").write_text("x" * 5000)
    small = {
        t.name: t for t in files.make_file_tools(layout, max_read_bytes=100, max_write_chars=10)
    }
    text = small["read_file"](path="big.txt")
    assert text.startswith("x" * 100) and text.endswith(
        "[truncated: read the first 100 of 5000 bytes]"
    )
    with pytest.raises(ToolRetry, match="longer than 10 characters"):
        small["write_file"](path="c.txt", content="y" * 11)
    assert not (layout / "c.txt").exists()


def test_a_final_symlink_swapped_in_after_the_check_is_not_followed(layout: Path) -> None:
    # The race safe_path cannot see: the name becomes a link between check and open.
    target = layout / "swap.txt"
    target.symlink_to(layout.parent / "outside.txt")
    fd_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    with pytest.raises(OSError, match="Too many levels of symbolic links"):  # ELOOP
        os.open(target, fd_flags)
    assert (layout.parent / "outside.txt").read_text() == "SECRET"


def test_module_tools_use_the_root_from_the_environment(
    layout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOOP_FILES_ROOT", str(layout))
    module = load("files")
    assert isinstance(module.read_file, Tool)
    assert module.read_file(path="notes/a.txt") == "alpha\n"
    with pytest.raises(UnsafePath):
        module.read_file(path="../outside.txt")


def test_a_missing_root_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a directory"):
        files.make_file_tools(tmp_path / "nope")


# -- issue 13: special files and dotfiles --------------------------------------------------------


def test_a_fifo_is_refused_at_once_instead_of_blocking(layout: Path) -> None:
    os.mkfifo(layout / "pipe")
    tools = tools_for(layout)
    started = time.monotonic()
    with pytest.raises(ToolRetry, match=r"not a regular file|no file"):
        tools["read_file"](path="pipe")
    with pytest.raises(ToolRetry):
        tools["write_file"](path="pipe", content="x")
    assert time.monotonic() - started < 2


def test_the_fifo_check_holds_after_a_swap(layout: Path) -> None:
    # Past the is_file() check, the name became a FIFO: the open itself must not block.
    os.mkfifo(layout / "pipe")
    started = time.monotonic()
    with pytest.raises(ToolRetry, match="not a regular file"):
        files._open_regular(layout / "pipe", os.O_RDONLY, "pipe")
    assert time.monotonic() - started < 2


def test_dotfiles_are_refused_and_unlisted_unless_allowed(layout: Path) -> None:
    (layout / ".env").write_text("OPENAI_API_KEY=sk-x")
    (layout / ".git").mkdir()
    (layout / ".git" / "config").write_text("[remote]")
    (layout / "env-link").symlink_to(layout / ".env")
    tools = tools_for(layout)
    for path in (".env", ".git/config", "env-link", "./.env", "notes/.hidden"):
        with pytest.raises(HiddenPath, match="hidden"):
            tools["read_file"](path=path)
    with pytest.raises(HiddenPath):
        tools["write_file"](path=".bashrc", content="x")
    assert ".env" not in tools["list_dir"](path=".") and ".git" not in tools["list_dir"]()
    allowed = {t.name: t for t in files.make_file_tools(layout, allow_hidden=True)}
    assert allowed["read_file"](path=".env") == "OPENAI_API_KEY=sk-x"
    assert ".env" in allowed["list_dir"]()


def test_module_tools_refuse_dotfiles_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("SECRET=1")
    monkeypatch.delenv("AGENTLOOP_FILES_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    module = load("files")
    with pytest.raises(HiddenPath):
        module.read_file(path=".env")
