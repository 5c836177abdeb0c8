"""Shared test set-up: no test may reach a real model over the network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentloop.testing import block_model_requests


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with block_model_requests():
        yield
