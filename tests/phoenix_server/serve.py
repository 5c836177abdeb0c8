"""Start Arize Phoenix (``phoenix serve``) on loopback only; run with Phoenix's own Python.

``PHOENIX_HOST`` binds Phoenix's HTTP server (the UI, its API and the OTLP/HTTP receiver), but
its gRPC receiver always listens on every interface (``[::]``) with no setting to change that.
This launcher binds that one to 127.0.0.1 too, and changes nothing else.
"""

from __future__ import annotations

import sys

from grpc.aio import _server

_add_insecure_port = _server.Server.add_insecure_port


def _loopback(self: _server.Server, address: str) -> int:
    return _add_insecure_port(self, address.replace("[::]", "127.0.0.1"))


_server.Server.add_insecure_port = _loopback  # type: ignore[method-assign]

from phoenix.server.main import main  # noqa: E402  (after the patch above)

sys.argv = ["phoenix", "serve"]
sys.exit(main())
