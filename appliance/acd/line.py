"""A queue's line: the waiting contacts' keys in order, with the rank of any key.

Position announcements need "how many are ahead of me" at any depth; a heap cannot
say, a sorted Python list pays an O(n) shift on every change. This is a sorted list
cut into buckets of at most ``2 * LOAD`` keys: insertion and removal shift one bucket,
and a rank adds the lengths of the buckets before it (n / LOAD of them).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from appliance.acd.heap import Key

LOAD = 256


class Line:
    __slots__ = ("_len", "_lists", "_maxes")

    def __init__(self) -> None:
        self._lists: list[list[Key]] = []
        self._maxes: list[Key] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Key]:
        for bucket in self._lists:
            yield from bucket

    def add(self, key: Key) -> None:
        if not self._lists:
            self._lists.append([key])
            self._maxes.append(key)
            self._len = 1
            return
        i = bisect_left(self._maxes, key)
        if i == len(self._maxes):
            i -= 1
        bucket = self._lists[i]
        j = bisect_left(bucket, key)
        if j < len(bucket) and bucket[j] == key:
            raise KeyError(f"{key!r} is already in the line")
        bucket.insert(j, key)
        self._maxes[i] = bucket[-1]
        self._len += 1
        if len(bucket) > 2 * LOAD:
            self._lists[i:i + 1] = [bucket[:LOAD], bucket[LOAD:]]
            self._maxes[i:i + 1] = [bucket[LOAD - 1], bucket[-1]]

    def remove(self, key: Key) -> None:
        i, j = self._find(key)
        bucket = self._lists[i]
        del bucket[j]
        self._len -= 1
        if bucket:
            self._maxes[i] = bucket[-1]
        else:
            del self._lists[i]
            del self._maxes[i]

    def rank(self, key: Key) -> int:
        """How many keys are before ``key`` (0: at the head); KeyError when absent."""
        i, j = self._find(key)
        return sum(len(b) for b in self._lists[:i]) + j

    def first(self) -> Key | None:
        return self._lists[0][0] if self._lists else None

    def _find(self, key: Key) -> tuple[int, int]:
        i = bisect_left(self._maxes, key)
        if i < len(self._maxes):
            bucket = self._lists[i]
            j = bisect_left(bucket, key)
            if j < len(bucket) and bucket[j] == key:
                return i, j
        raise KeyError(f"{key!r} is not in the line")


__all__ = ["Line"]
