"""An indexed binary min-heap: O(1) peek, O(log n) push, and O(log n) removal of any
item by name, which a plain ``heapq`` cannot do without leaving stale entries behind.

The ACD keeps one per pool for ready agents (ordered by the queue's strategy) and one
per pool for waiting contacts (ordered by priority, then first enqueue time). Items
are ids; keys are tuples of numbers and unique (they end with a sequence number or an
agent's configuration order), so no two keys compare equal.
"""

from __future__ import annotations

from collections.abc import Iterator

Key = tuple[float, ...]


class IndexedHeap:
    __slots__ = ("_heap", "_pos")

    def __init__(self) -> None:
        self._heap: list[tuple[Key, str]] = []
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __contains__(self, item: object) -> bool:
        return item in self._pos

    def __iter__(self) -> Iterator[str]:
        """The items, in no particular order."""
        return iter(list(self._pos))

    def key(self, item: str) -> Key:
        return self._heap[self._pos[item]][0]

    def peek(self) -> tuple[Key, str] | None:
        return self._heap[0] if self._heap else None

    def ordered(self) -> list[tuple[Key, str]]:
        """Every (key, item), smallest key first (O(n log n): for small heaps and views)."""
        return sorted(self._heap)

    def push(self, item: str, key: Key) -> None:
        if item in self._pos:
            raise KeyError(f"{item!r} is already in the heap")
        self._heap.append((key, item))
        self._pos[item] = len(self._heap) - 1
        self._up(len(self._heap) - 1)

    def pop(self) -> tuple[Key, str]:
        top = self._heap[0]
        self.remove(top[1])
        return top

    def remove(self, item: str) -> None:
        """Remove ``item`` (KeyError when absent)."""
        i = self._pos.pop(item)
        last = self._heap.pop()
        if i == len(self._heap):
            return
        self._heap[i] = last
        self._pos[last[1]] = i
        if i > 0 and last[0] < self._heap[(i - 1) >> 1][0]:
            self._up(i)
        else:
            self._down(i)

    def discard(self, item: str) -> None:
        if item in self._pos:
            self.remove(item)

    def _up(self, i: int) -> None:
        heap, pos = self._heap, self._pos
        entry = heap[i]
        while i > 0:
            parent = (i - 1) >> 1
            if entry[0] < heap[parent][0]:
                heap[i] = heap[parent]
                pos[heap[i][1]] = i
                i = parent
            else:
                break
        heap[i] = entry
        pos[entry[1]] = i

    def _down(self, i: int) -> None:
        heap, pos = self._heap, self._pos
        n = len(heap)
        entry = heap[i]
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            right = child + 1
            if right < n and heap[right][0] < heap[child][0]:
                child = right
            if heap[child][0] < entry[0]:
                heap[i] = heap[child]
                pos[heap[i][1]] = i
                i = child
            else:
                break
        heap[i] = entry
        pos[entry[1]] = i

    def check(self) -> None:
        """Assert the heap property and the index (tests)."""
        for i, (key, item) in enumerate(self._heap):
            assert self._pos[item] == i, (item, i)
            if i:
                assert not key < self._heap[(i - 1) >> 1][0], (item, i)
        assert len(self._pos) == len(self._heap)
