"""RTP port bookkeeping (pure): even ports from a range, RTCP on port + 1.

Ports are handed out round robin, so a port just released is the last to be reused
and late packets of an ended call do not land in a new one.
"""

from __future__ import annotations


class PortPoolExhausted(Exception):
    """Every port of the range is in use."""


class PortPool:
    """Even RTP ports in ``[low, high]`` (RTCP on port + 1), handed out round robin."""

    def __init__(self, low: int, high: int) -> None:
        if low % 2:
            low += 1
        if not 0 < low < high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self.low, self.high = low, high
        self._free = list(range(low, high, 2))  # port + 1 <= high for all of them
        self._used: set[int] = set()
        self._next = 0

    def allocate(self) -> int:
        n = len(self._free)
        for i in range(n):
            port = self._free[(self._next + i) % n]
            if port not in self._used:
                self._next = (self._next + i + 1) % n
                self._used.add(port)
                return port
        raise PortPoolExhausted(f"no free RTP port in {self.low}-{self.high}")

    def release(self, port: int) -> None:
        self._used.discard(port)

    @property
    def available(self) -> int:
        return len(self._free) - len(self._used)

    def __contains__(self, port: object) -> bool:
        return port in self._used
