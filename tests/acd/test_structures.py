"""The indexed heap and the line against plain reference models, at random."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.acd.heap import IndexedHeap
from appliance.acd.line import Line

ops = st.lists(st.tuples(st.sampled_from(["push", "remove", "pop"]), st.integers(0, 60),
                         st.integers(-5, 5)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_indexed_heap_is_a_priority_queue_with_removal(steps: list[tuple[str, int, int]]) -> None:
    heap = IndexedHeap()
    model: dict[str, tuple[float, ...]] = {}
    for op, n, k in steps:
        item = f"i{n}"
        if op == "push" and item not in model:
            key = (float(k), n)
            heap.push(item, key)
            model[item] = key
        elif op == "remove" and item in model:
            heap.remove(item)
            del model[item]
        elif op == "pop" and model:
            key, popped = heap.pop()
            assert key == min(model.values())
            assert model.pop(popped) == key
        heap.check()
        assert len(heap) == len(model)
        assert set(heap) == set(model)
        top = heap.peek()
        assert (top is None) == (not model)
        if top is not None:
            assert top[0] == min(model.values())
            assert heap.key(top[1]) == top[0]
        assert [item for _, item in heap.ordered()] == sorted(model, key=model.__getitem__)


def test_heap_refuses_a_second_push_and_unknown_removals() -> None:
    heap = IndexedHeap()
    heap.push("a", (1.0,))
    try:
        heap.push("a", (2.0,))
    except KeyError:
        pass
    else:
        raise AssertionError("pushed twice")
    try:
        heap.remove("b")
    except KeyError:
        pass
    else:
        raise AssertionError("removed a missing item")
    heap.discard("b")
    assert "a" in heap and bool(heap)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3000)), max_size=2500))
def test_line_ranks_like_a_sorted_list(steps: list[tuple[bool, int]]) -> None:
    line = Line()
    model: list[tuple[float, ...]] = []
    for add, n in steps:
        key = (float(-(n % 3)), float(n), n)
        if add and key not in model:
            line.add(key)
            model.append(key)
        elif not add and key in model:
            line.remove(key)
            model.remove(key)
    model.sort()
    assert list(line) == model and len(line) == len(model)
    assert line.first() == (model[0] if model else None)
    for i in range(0, len(model), max(1, len(model) // 50)):
        assert line.rank(model[i]) == i


def test_line_errors() -> None:
    line = Line()
    line.add((1.0,))
    for bad in (lambda: line.add((1.0,)), lambda: line.remove((2.0,)),
                lambda: line.rank((0.5,))):
        try:
            bad()
        except KeyError:
            continue
        raise AssertionError("no KeyError")


def test_line_with_many_buckets() -> None:
    import random

    rng = random.Random(5)
    keys = [(float(rng.randrange(3)), float(i), i) for i in range(6000)]
    rng.shuffle(keys)
    line = Line()
    for key in keys:
        line.add(key)
    for key in keys[::2]:
        line.remove(key)
    model = sorted(keys[1::2])
    assert list(line) == model
    for i in range(0, len(model), 97):
        assert line.rank(model[i]) == i
