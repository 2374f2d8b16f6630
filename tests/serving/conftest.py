"""Fixtures of the serving tests; the helpers live in serving_harness.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serving_harness import start

from genba.serving.app import ServerThread


@pytest.fixture(scope="module")
def linear_server() -> Iterator[ServerThread]:
    server = start("linear", horizon=4)
    yield server
    server.stop()
