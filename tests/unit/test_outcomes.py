"""Each outcome is serialised and size-checked on its own; what cannot be recorded ends its run dead."""

import uuid

import orjson
import pytest

from workers.outcomes import Outcome, serialise


def outcome(**changes):
    fields = {
        "id": 7,
        "token": uuid.UUID(int=1),
        "attempt": 1,
        "state": "succeeded",
        "retry_in_s": None,
        "duration_s": 0.01,
        "steps": [
            {
                "id": "a",
                "uses": "echo.message",
                "state": "ok",
                "duration_ms": 1.0,
                "output": {"message": "hi"},
            }
        ],
        "output": {"a": {"message": "hi"}},
        "error": None,
    }
    return Outcome(**{**fields, **changes})


def test_a_recordable_outcome_is_written_as_is_with_its_size():
    finished = serialise(outcome(), 1 << 20)
    doc = orjson.loads(finished.doc)
    assert (finished.id, finished.state, doc["state"], doc["token"]) == (
        7,
        "succeeded",
        "succeeded",
        str(uuid.UUID(int=1)),
    )
    assert doc["steps"][0]["output"] == {"message": "hi"}
    assert doc["record_bytes"] > 0 and doc["attempt"] == 1


def test_an_outcome_over_the_record_limit_ends_its_run_dead_without_outputs():
    big = outcome(output={"a": {"message": "x" * 5000}}, state="failed", retry_in_s=5.0)
    finished = serialise(big, 2000)
    doc = orjson.loads(finished.doc)
    assert finished.state == "dead" and doc["state"] == "dead" and doc["retry_in_s"] is None
    assert doc["error"]["code"] == "OUTPUT_TOO_LARGE" and doc["error"]["retryable"] is False
    assert doc["output"] is None
    assert doc["steps"] == [{"id": "a", "uses": "echo.message", "state": "ok", "duration_ms": 1.0}]


@pytest.mark.parametrize(
    "output",
    [
        {"text": "nul \x00 inside"},
        {"n\x00key": 1},
        {"n": 2**70},
        {"lone": "\ud800"},
    ],
)
def test_an_outcome_postgresql_cannot_store_ends_its_run_dead(output):
    finished = serialise(outcome(output=output), 1 << 20)
    doc = orjson.loads(finished.doc)
    assert doc["state"] == "dead" and doc["error"]["code"] == "UNRECORDABLE_OUTPUT"
    assert doc["output"] is None


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    finished = serialise(outcome(output={"path": "C:\\u0000dir"}), 1 << 20)
    assert finished.state == "succeeded"
    assert orjson.loads(finished.doc)["output"] == {"path": "C:\\u0000dir"}
