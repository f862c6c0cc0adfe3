"""Measuring values before they are kept: size as JSON, shared parts, self-reference, depth."""

import orjson
import pytest

from engine.values import MAX_DEPTH, SelfReference, TooDeep, TooLarge, ValueProblem, measure


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -12,
        3.25,
        "",
        "plain",
        {"a": [1, 2, {"b": None}], "c": "x"},
        [[], {}, [[]]],
        {"k": ["a", "b"] * 10},
    ],
)
def test_the_size_is_the_compact_json_size(value):
    assert measure(value, max_bytes=1 << 20) == len(orjson.dumps(value))


def test_a_shared_part_counts_as_often_as_it_is_written_but_is_walked_once():
    """Sixty levels that each hold the one below twice: 2^60 copies as text (a walk of each would never
    end), sixty objects in memory."""
    value = {"m": "x" * 10}
    for _ in range(60):
        value = {"a": value, "b": value}
    with pytest.raises(TooLarge):
        measure(value, max_bytes=10 * 1024 * 1024)
    small = {"m": "x"}
    for _ in range(5):
        small = {"a": small, "b": small}
    assert measure(small, max_bytes=1 << 20) == len(orjson.dumps(small))


def test_a_value_that_contains_itself_is_refused():
    loop = {"a": 1}
    loop["self"] = [loop]
    with pytest.raises(SelfReference) as raised:
        measure(loop, max_bytes=1 << 20)
    assert raised.value.own is False


def test_a_value_holding_a_forbidden_container_is_refused_as_its_own():
    steps = {"a": {"message": "hi"}}
    output = {"data": {"nested": [steps]}}
    with pytest.raises(SelfReference) as raised:
        measure(output, max_bytes=1 << 20, forbidden={id(steps)})
    assert raised.value.own is True


def test_depth_is_bounded():
    deep = "leaf"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(TooDeep):
        measure(deep, max_bytes=1 << 20)
    assert measure(deep[0][0], max_bytes=1 << 20) > 0


def test_a_value_just_over_the_limit_is_refused():
    value = {"text": "x" * 100}
    size = len(orjson.dumps(value))
    assert measure(value, max_bytes=size) == size
    with pytest.raises(TooLarge):
        measure(value, max_bytes=size - 1)


def test_integers_json_history_cannot_hold_are_refused():
    with pytest.raises(ValueProblem):
        measure({"n": 2**70}, max_bytes=1 << 20)
