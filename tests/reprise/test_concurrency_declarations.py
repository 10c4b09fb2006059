"""``@task(concurrency=...)`` and ``concurrency_limit(...)`` refuse a bad declaration where
it is written (at import, naming the task and what is wrong), before the worker could
register a version the server would refuse. No server: the SDK alone."""

from __future__ import annotations

from typing import Any

import pytest

from reprise import concurrency_limit, task
from reprise.registry import REGISTRY, Concurrency

A = concurrency_limit("decl-a", total=2)
B = concurrency_limit("decl-b", per_key=1)
C = concurrency_limit("decl-c", total=1, per_key=1)


def _declare(spec: Any) -> None:
    """``@task(concurrency=spec)`` up to the decorator (which would register the task)."""
    task(id="decl-task", concurrency=spec)


def test_a_task_holds_at_most_two_named_limits() -> None:
    with pytest.raises(ValueError, match="'decl-task': at most two named concurrency limits"):
        _declare([A, B, C])
    with pytest.raises(ValueError, match="at most two named"):
        _declare([{"total": 1}, A, B, C])
    _declare([{"total": 1}, A, B])  # its own limit does not count
    assert "decl-task" not in REGISTRY.tasks


@pytest.mark.parametrize("spec", [
    {"max": 3},
    {"total": 1, "perKey": 1},
    [A, {"total": 1, "burst": 2}],
])
def test_an_unknown_field_of_a_tasks_own_limit_is_refused_by_name(spec: Any) -> None:
    with pytest.raises(ValueError, match=r"'decl-task': unknown concurrency field '(max|perKey|burst)'"):
        _declare(spec)


@pytest.mark.parametrize(("spec", "field"), [
    ({"total": -1}, "total"),
    ({"per_key": 100_001}, "per_key"),
    ({"total": True}, "total"),
    ({"total": 1.5}, "total"),
    ({"per_key": "3"}, "per_key"),
])
def test_a_bound_outside_0_to_100000_or_not_an_integer_is_refused(spec: Any, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be an integer from 0 to 100000"):
        _declare(spec)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"total": -5}, "total"),
    ({"per_key": 200_000}, "per_key"),
    ({"total": False}, "total"),
])
def test_a_named_limit_with_a_bad_bound_is_refused_where_it_is_declared(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"{field} must be an integer from 0 to 100000"):
        concurrency_limit("decl-bad", **kwargs)
    with pytest.raises(ValueError, match=f"{field} must be an integer"):
        Concurrency(**kwargs)


@pytest.mark.parametrize("name", ["", "task/x", "has space", "x" * 123, 7])
def test_a_named_limit_needs_a_plain_name(name: Any) -> None:
    with pytest.raises(ValueError, match="a concurrency limit's name is 1-122 letters"):
        concurrency_limit(name, total=1)


def test_the_bounds_0_and_100000_and_none_are_accepted() -> None:
    assert concurrency_limit("decl-edge", total=0, per_key=100_000).total == 0
    _declare({"total": 100_000, "per_key": 0})
    _declare({})  # no bound at all: a limit that only counts
    _declare(Concurrency(per_key=None))


@pytest.mark.parametrize("spec", [[A, A], [{"total": 1}, Concurrency(total=2)]])
def test_one_limit_named_twice_is_refused(spec: Any) -> None:
    with pytest.raises(ValueError, match="a concurrency limit is named twice"):
        _declare(spec)


@pytest.mark.parametrize("spec", [5, "decl-a", [A, 3]])
def test_anything_but_a_dict_a_concurrency_or_a_named_limit_is_refused(spec: Any) -> None:
    with pytest.raises(ValueError, match="concurrency= takes a dict, Concurrency"):
        _declare(spec)
