"""The node's HTTP API in the test process (aiohttp's test server), and the pieces the
agent desk's API tests share: a settable wall clock and desks closed after each test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from appliance.agents import AgentDesk

Client = TestClient[web.Request, web.Application]


def run_app(app: web.Application, scenario: Callable[[Client], Awaitable[None]],
            timeout: float = 10.0) -> None:
    """Serve ``app`` and run ``scenario`` against it with a client (``timeout`` s)."""
    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await asyncio.wait_for(scenario(client), timeout)

    asyncio.run(main())


class Clock:
    """A wall clock (epoch seconds) the test sets."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


OPEN_DESKS: list[AgentDesk] = []  # closed after each test by ``close_desks``


@pytest.fixture(autouse=True)
def close_desks() -> Iterator[None]:
    """(Import it into a test module: the desks it opened are closed after each test.)"""
    yield
    while OPEN_DESKS:
        OPEN_DESKS.pop().close()
