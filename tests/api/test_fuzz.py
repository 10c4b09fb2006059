"""Property-based fuzzing of the API, bounded so the whole module runs in seconds.

* Hypothesis sends JSON a client may write — NaN, ±Infinity, numbers that overflow, lone
  surrogates, U+0000, nesting past the limit — to the routes that store what they are sent
  (trigger, replay, metadata, a waitpoint token's completion and callback URL). Never a 5xx; a 4xx is ``{"error": message}``; a 2xx
  stored exactly what was sent.
* Schemathesis generates requests for every operation of the api's own OpenAPI document
  (``/openapi.json``), with a fixed example budget. Any 5xx fails the build.

The examples are derandomized: the same inputs every run, so CI fails on a new 5xx, not
on a lucky draw. Widen ``max_examples`` locally to hunt further.
"""

from __future__ import annotations

import json
import math
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from reprise_server.api.app import create_app
from tests.support import triggers
from tests.support.fixtures import ProjectKeys

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = {"content-type": "application/json"}

# Text with lone surrogates (category Cs) and U+0000 among ordinary characters.
texts = st.text(st.characters(codec=None, categories=("L", "N", "P", "Cs", "Cc")), max_size=8)
numbers = st.integers(-(2**53), 2**53) | st.floats(allow_nan=True, allow_infinity=True)
# A number literal too large for a double: Python reads it as Infinity.
OVERFLOW = object()
scalars = st.none() | st.booleans() | numbers | texts | st.just(OVERFLOW)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    """A JSON value, sometimes wrapped in lists past the depth limit (64)."""
    value = draw(values)
    for _ in range(draw(st.sampled_from([0, 0, 0, 70, 2000]))):
        value = [value]
    return value


def encode(value: Any) -> str:
    """JSON text as a careless client writes it: NaN and Infinity as bare words, lone
    surrogates as ``\\ud800`` escapes, and ``1e400`` for :data:`OVERFLOW`."""
    marker = "\u0001overflow\u0001"

    def swap(node: Any) -> Any:
        if node is OVERFLOW:
            return marker
        if isinstance(node, list):
            return [swap(child) for child in node]
        if isinstance(node, dict):
            return {key: swap(child) for key, child in node.items()}
        return node

    if not _is_deep(value):
        return json.dumps(swap(value)).replace(json.dumps(marker), "1e400")
    depth, inner = 0, value
    while isinstance(inner, list) and len(inner) == 1 and depth < 3000:
        depth, inner = depth + 1, inner[0]
    return "[" * depth + encode(inner) + "]" * depth


def _is_deep(value: Any) -> bool:
    depth = 0
    while isinstance(value, list) and len(value) == 1:
        depth, value = depth + 1, value[0]
    return depth > 500


def assert_refused_or_stored(response: Any) -> bool:
    """True for a 2xx; a 4xx must have the error shape; a 5xx fails."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"}, body
        assert isinstance(body["error"], str)
        assert body["error"]
        return False
    return True


def same_json(stored: Any, sent: Any) -> bool:
    """Whether ``stored`` is the JSON value ``sent``: numbers compare by value (Postgres
    keeps ``3.7e+16`` as the numeric 37000000000000000, an int when read back)."""
    if isinstance(sent, int | float) and not isinstance(sent, bool):
        return isinstance(stored, int | float) and float(stored) == float(sent)
    if isinstance(sent, list):
        return (isinstance(stored, list) and len(stored) == len(sent)
                and all(same_json(a, b) for a, b in zip(stored, sent, strict=True)))
    if isinstance(sent, dict):
        return (isinstance(stored, dict) and stored.keys() == sent.keys()
                and all(same_json(stored[key], sent[key]) for key in sent))
    return bool(stored == sent)


@FUZZ
@given(payload=payloads())
def test_trigger_never_5xx_and_stores_what_it_accepts(
    api: Any, project: ProjectKeys, payload: Any
) -> None:
    raw = f'{{"payload": {encode(payload)}, "options": {{"delay": "1h"}}}}'
    response = api.post("/api/v1/tasks/test-echo/trigger", content=raw,
                        headers={**project.headers(), **JSON})
    if assert_refused_or_stored(response):
        run = api.get(f"/api/v3/runs/{response.json()['id']}", headers=project.headers())
        assert same_json(run.json().get("payload"), payload)


@FUZZ
@given(metadata=st.dictionaries(texts, values, max_size=3))
def test_metadata_never_5xx_and_stores_what_it_accepts(
    api: Any, project: ProjectKeys, metadata: dict[str, Any]
) -> None:
    run_id = triggers.via_api(api, project, delay="1h")
    path = f"/api/v1/runs/{run_id}/metadata"
    response = api.put(path, content=f'{{"metadata": {encode(metadata)}}}',
                       headers={**project.headers(), **JSON})
    if assert_refused_or_stored(response):
        stored = api.get(path, headers=project.headers()).json()["metadata"]
        assert same_json(stored, metadata)


@FUZZ
@given(payload=payloads(), tags=st.lists(texts, max_size=3))
def test_replay_never_5xx_and_stores_what_it_accepts(
    api: Any, project: ProjectKeys, payload: Any, tags: list[str]
) -> None:
    original = triggers.via_api(api, project, delay="1h")
    raw = f'{{"payload": {encode(payload)}, "tags": {encode(tags)}, "delay": "1h"}}'
    response = api.post(f"/api/v1/runs/{original}/replay", content=raw,
                        headers={**project.headers(), **JSON})
    if assert_refused_or_stored(response):
        run = api.get(f"/api/v3/runs/{response.json()['id']}", headers=project.headers())
        assert same_json(run.json().get("payload"), payload)


def _has_bare_constant(value: Any) -> bool:
    """Whether :func:`encode` writes a bare ``NaN`` or ``Infinity`` for ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if isinstance(value, list):
        return any(_has_bare_constant(child) for child in value)
    if isinstance(value, dict):
        return any(_has_bare_constant(child) for child in value.values())
    return False


def _token_output(api: Any, project: ProjectKeys, token_id: str) -> Any:
    item = api.get(f"/api/v1/waitpoints/tokens/{token_id}", headers=project.headers()).json()
    assert item["status"] == "COMPLETED", item
    return json.loads(item["output"])


@FUZZ
@given(data=payloads())
def test_token_completion_never_5xx_and_stores_what_it_accepts(
    api: Any, project: ProjectKeys, data: Any
) -> None:
    token = api.post("/api/v1/waitpoints/tokens", json={}, headers=project.headers()).json()
    response = api.post(f"/api/v1/waitpoints/tokens/{token['id']}/complete",
                        content=f'{{"data": {encode(data)}}}',
                        headers={**project.headers(), **JSON})
    if assert_refused_or_stored(response):
        assert same_json(_token_output(api, project, token["id"]), data)


@FUZZ
@given(data=payloads())
def test_token_callback_never_5xx_and_stores_what_it_accepts(
    api: Any, project: ProjectKeys, data: Any
) -> None:
    """The callback URL takes any JSON; text that is not JSON (bare NaN, Infinity)
    completes the token with ``{}``, as Trigger.dev's does."""
    token = api.post("/api/v1/waitpoints/tokens", json={}, headers=project.headers()).json()
    path = token["url"].removeprefix("http://testserver")
    response = api.post(path, content=encode(data), headers=JSON)
    if assert_refused_or_stored(response):
        expected = {} if _has_bare_constant(data) else data
        assert same_json(_token_output(api, project, token["id"]), expected)


def openapi_operations() -> list[Any]:
    # Realtime long-polls (20 s a request) and the dashboard's HTML forms are left out:
    # the first would spend the time budget waiting, the second is not a JSON API. The
    # signed packet-object URLs refuse every unsigned request before reading it.
    schema = (
        schemathesis.openapi.from_asgi("/openapi.json", create_app())
        .include(path_regex=r"^/(api|v1)/")
        .exclude(path_regex=r"^/api/v1/packet-objects/")
    )
    return [result.ok() for result in schema.get_all_operations()]


def test_no_operation_of_the_openapi_document_answers_5xx(project: ProjectKeys) -> None:
    """Each operation gets a fixed budget of generated requests (valid and not), made
    with the project's key; the only check is that none answers 5xx."""
    operations = openapi_operations()
    assert len(operations) > 30  # the document lists the api, not an empty schema
    failures: list[str] = []
    for operation in operations:

        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call(headers=project.headers())
            case.validate_response(response, checks=[not_a_server_error])

        try:
            call()
        except Exception as exc:  # collect every operation's failure, then fail once
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
