"""Media test helpers: ``async def`` tests run on a fresh event loop with a timeout.

No plugin is needed: coroutine test functions are run by ``pytest_pyfunc_call`` below
with ``asyncio.run``, each bounded by ``ASYNC_TEST_TIMEOUT`` seconds (the suite-wide
pytest-timeout still applies on top).
"""

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
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}

    async def main() -> None:
        await asyncio.wait_for(func(**kwargs), ASYNC_TEST_TIMEOUT)

    asyncio.run(main())
    return True
