"""Node link tests: ``async def`` tests run with ``asyncio.run`` on a fresh loop, each
bounded by ``ASYNC_TEST_TIMEOUT`` (asyncio.run also joins the worker threads linkd's
``asyncio.to_thread`` calls started, so the suite's thread-leak guard stays quiet)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

ASYNC_TEST_TIMEOUT = 20.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name]
                              for name in pyfuncitem._fixtureinfo.argnames}

    async def main() -> None:
        await asyncio.wait_for(func(**kwargs), ASYNC_TEST_TIMEOUT)

    asyncio.run(main())
    return True
