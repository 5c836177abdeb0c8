"""``agentloop view``: the local trace viewer in the browser (needs ``agentloop[view]``)."""

from __future__ import annotations

import argparse

from agentloop.cli._output import DEFAULT_TRACE_DIR, EXIT_OK, say
from agentloop.errors import UserError

DEFAULT_PORT = 8765


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    view = commands.add_parser(
        "view",
        parents=[common],
        help="look at traces and evals in the browser",
        description="Serve a local viewer of the traces (and eval runs) under DIR on "
        "http://127.0.0.1:PORT/: runs list, run timelines, diffs, evaluations, and feedback "
        "that is written back into the trace. Binds to 127.0.0.1 only. Needs the view extra: "
        "pip install 'agentloop[view]'.",
    )
    view.add_argument(
        "dirs",
        metavar="DIR",
        nargs="*",
        default=[DEFAULT_TRACE_DIR],
        help="folders of traces and eval runs, searched recursively (default: ./traces)",
    )
    view.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 8765; 0: any free one)"
    )
    view.add_argument("--open", action="store_true", help="open the viewer in a browser tab")
    view.add_argument("--read-only", action="store_true", help="show only: take no feedback")
    view.set_defaults(handler=cmd_view)


def cmd_view(args: argparse.Namespace) -> int:
    """Serve the viewer until Ctrl-C."""
    try:
        from agentloop.viewer import serve  # the extra's packages load only for this command
    except ImportError as exc:
        package = (exc.name or "a package").split(".")[0]
        raise UserError(
            f"agentloop view needs the view extra ({package} is not installed): "
            "pip install 'agentloop[view]'"
        ) from None

    serve(args.dirs, port=args.port, open_browser=args.open, read_only=args.read_only, announce=say)
    return EXIT_OK
