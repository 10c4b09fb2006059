"""``/api/v1/waitpoints/tokens`` in the official SDK's shapes: create (10 KB body, idempotency
key, timeout, tags, the x-trigger-jwt that may complete it), list with ``page[...]`` and
``filter[...]``, retrieve, complete with a secret key or a scoped public token, and the
callback URL (no key; wrong hash 401, unknown token 404, no Content-Length 411, too large
413, a body that is not JSON completes it with ``{}``). Bad input is a 400 naming the field;
an absent optional field is omitted, never ``null``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest

from tests.api.test_public_tokens import bearer, sdk_token
from tests.support.fixtures import ProjectKeys

TOKENS = "/api/v1/waitpoints/tokens"


def _create(api: Any, project: ProjectKeys, env: str = "dev", **body: Any) -> dict[str, Any]:
    response = api.post(TOKENS, json=body, headers=project.headers(env))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _path(url: str) -> str:
    return urlsplit(url).path


def _retrieve(api: Any, project: ProjectKeys, token_id: str) -> dict[str, Any]:
    response = api.get(f"{TOKENS}/{token_id}", headers=project.headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_create_answers_id_is_cached_url_and_a_jwt_scoped_to_the_token(
    api: Any, project: ProjectKeys
) -> None:
    response = api.post(TOKENS, json={}, headers=project.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "isCached", "url"}
    assert body["id"].startswith("waitpoint_")
    assert body["isCached"] is False
    assert body["url"].startswith("http://testserver/api/v1/waitpoints/tokens/" + body["id"]
                                  + "/callback/")
    claims = jwt.decode(response.headers["x-trigger-jwt"], options={"verify_signature": False})
    assert claims["scopes"] == [f"write:waitpoints:{body['id']}"]
    assert json.loads(response.headers["x-trigger-jwt-claims"]) == {
        "sub": project.environment_ids["dev"], "pub": True}
    # no body at all is a token with no options
    assert api.post(TOKENS, headers=project.headers()).status_code == 200


def test_create_with_options_then_retrieve_shows_them(api: Any, project: ProjectKeys) -> None:
    created = _create(api, project, idempotencyKey="order-1", idempotencyKeyTTL="1h",
                      timeout="1h", tags=["user:1", "org:2"])
    again = _create(api, project, idempotencyKey="order-1")
    assert (again["id"], again["isCached"], again["url"]) == (
        created["id"], True, created["url"])
    item = _retrieve(api, project, created["id"])
    assert item["status"] == "WAITING"
    assert item["tags"] == ["org:2", "user:1"]
    assert item["idempotencyKey"] == "order-1"
    for key in ("idempotencyKeyExpiresAt", "timeoutAt", "createdAt"):
        assert item[key].endswith("Z"), key
    assert item["url"] == created["url"]
    # absent optional fields are omitted, never null
    assert not {"completedAt", "output", "outputType", "outputIsError"} & set(item)
    assert None not in item.values()
    # one tag as a string
    single = _create(api, project, tags="solo")
    assert _retrieve(api, project, single["id"])["tags"] == ["solo"]


@pytest.mark.parametrize(("body", "field"), [
    ({"idempotencyKey": 5}, "idempotencyKey"),
    ({"idempotencyKey": "k" * 2049}, "idempotencyKey"),
    ({"idempotencyKey": "k", "idempotencyKeyTTL": "forever"}, "idempotencyKeyTTL"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": 30}, "timeout"),
    ({"tags": [1]}, "tags"),
    ({"tags": ["x" * 129]}, "tags"),
    ({"tags": ["a\u0000b"]}, "tags"),
    ({"colour": "red"}, "colour"),
    ([], "JSON object"),
])
def test_bad_create_input_is_400_naming_the_field_and_writes_nothing(
    api: Any, project: ProjectKeys, body: Any, field: str
) -> None:
    response = api.post(TOKENS, json=body, headers=project.headers())
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    listed = api.get(TOKENS, headers=project.headers()).json()
    assert listed["data"] == []


def test_create_limits_tags_422_and_the_body_to_10_kb(api: Any, project: ProjectKeys) -> None:
    many = api.post(TOKENS, json={"tags": [f"t{i}" for i in range(11)]},
                    headers=project.headers())
    assert many.status_code == 422
    assert many.json() == {
        "error": "Waitpoints can only have 10 tags, you're trying to set 11."}
    big = api.post(TOKENS, json={"idempotencyKey": "k", "tags": ["x" * 128] * 10,
                                 "pad": "p" * 10_000}, headers=project.headers())
    assert (big.status_code, big.json()) == (413, {"error": "Request body too large"})
    not_json = api.post(TOKENS, content=b"{nope", headers=project.headers())
    assert not_json.status_code == 400
    assert "not JSON" in not_json.json()["error"]


def test_routes_need_a_key_and_401_wins(api: Any, project: ProjectKeys) -> None:
    token = _create(api, project)
    for method, url, body in (
        ("POST", TOKENS, {"colour": 1}),
        ("GET", TOKENS + "?filter[status]=NOPE", None),
        ("GET", f"{TOKENS}/{token['id']}", None),
        ("POST", f"{TOKENS}/{token['id']}/complete", {"data": 1}),
    ):
        response = api.request(method, url, json=body, headers={"Authorization": "Bearer nope"})
        assert (response.status_code, response.json()) == (
            401, {"error": "Invalid or Missing API key"}), url
    assert _retrieve(api, project, token["id"])["status"] == "WAITING"


def test_another_environment_sees_no_token(api: Any, project: ProjectKeys) -> None:
    token = _create(api, project)
    for method, url, body in (
        ("GET", f"{TOKENS}/{token['id']}", None),
        ("POST", f"{TOKENS}/{token['id']}/complete", {"data": 1}),
    ):
        response = api.request(method, url, json=body, headers=project.headers("prod"))
        assert (response.status_code, response.json()) == (
            404, {"error": "Waitpoint not found"}), url
    assert api.get(TOKENS, headers=project.headers("prod")).json()["data"] == []


def test_complete_once_keeps_the_first_data_and_retrieve_shows_it(
    api: Any, project: ProjectKeys
) -> None:
    token = _create(api, project)
    url = f"{TOKENS}/{token['id']}/complete"
    first = api.post(url, json={"data": {"approved": True}}, headers=project.headers())
    assert (first.status_code, first.json()) == (200, {"success": True})
    second = api.post(url, json={"data": {"approved": False}}, headers=project.headers())
    assert (second.status_code, second.json()) == (200, {"success": True})
    item = _retrieve(api, project, token["id"])
    assert item["status"] == "COMPLETED"
    assert json.loads(item["output"]) == {"approved": True}
    assert (item["outputType"], item["outputIsError"]) == ("application/json", False)
    assert item["completedAt"].endswith("Z")


def test_complete_refuses_bad_bodies(api: Any, project: ProjectKeys) -> None:
    token = _create(api, project)
    url = f"{TOKENS}/{token['id']}/complete"
    for body, field in (({"data": 1, "extra": 2}, "extra"), ([1], "JSON object"),
                        ({"data": "a\u0000"}, "data")):
        response = api.post(url, json=body, headers=project.headers())
        assert response.status_code == 400, body
        assert field in response.json()["error"], body
    assert api.post(url, headers=project.headers()).status_code == 400  # no body
    assert _retrieve(api, project, token["id"])["status"] == "WAITING"
    missing = api.post(f"{TOKENS}/waitpoint_nope/complete", json={"data": 1},
                       headers=project.headers())
    assert (missing.status_code, missing.json()) == (404, {"error": "Waitpoint not found"})
    # data may be absent or null: completed with none
    assert api.post(url, json={}, headers=project.headers()).json() == {"success": True}
    assert _retrieve(api, project, token["id"])["status"] == "COMPLETED"


def test_a_public_token_completes_what_its_scopes_name(api: Any, project: ProjectKeys) -> None:
    response = api.post(TOKENS, json={}, headers=project.headers())
    mine = response.json()["id"]
    issued = response.headers["x-trigger-jwt"]
    other = _create(api, project)["id"]
    refused = api.post(f"{TOKENS}/{other}/complete", json={"data": 1}, headers=bearer(issued))
    assert refused.status_code == 403
    assert other in refused.json()["error"]
    done = api.post(f"{TOKENS}/{mine}/complete", json={"data": 2}, headers=bearer(issued))
    assert (done.status_code, done.json()) == (200, {"success": True})
    # signed by the SDK with the secret key, for every waitpoint
    any_waitpoint = sdk_token(project, ["write:waitpoints"])
    assert api.post(f"{TOKENS}/{other}/complete", json={"data": 3},
                    headers=bearer(any_waitpoint)).status_code == 200
    # a read scope does not complete; a public token reads and creates nothing
    reader = sdk_token(project, ["read:all"])
    third = _create(api, project)["id"]
    assert api.post(f"{TOKENS}/{third}/complete", json={"data": 1},
                    headers=bearer(reader)).status_code == 403
    for method, url in (("GET", f"{TOKENS}/{mine}"), ("GET", TOKENS), ("POST", TOKENS)):
        assert api.request(method, url, json={}, headers=bearer(issued)).status_code == 401


def test_the_callback_url_completes_without_a_key(api: Any, project: ProjectKeys) -> None:
    token = _create(api, project)
    path = _path(token["url"])
    done = api.post(path, json={"approved": True})
    assert (done.status_code, done.json()) == (200, {"success": True})
    again = api.post(path, json={"approved": False})
    assert (again.status_code, again.json()) == (200, {"success": True})
    assert json.loads(_retrieve(api, project, token["id"])["output"]) == {"approved": True}


def test_the_callback_url_takes_any_json_and_not_json_is_an_empty_object(
    api: Any, project: ProjectKeys
) -> None:
    listed = _create(api, project)
    api.post(_path(listed["url"]), json=[1, "two"])
    assert json.loads(_retrieve(api, project, listed["id"])["output"]) == [1, "two"]
    garbled = _create(api, project)
    response = api.post(_path(garbled["url"]), content=b"approved=yes",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    assert json.loads(_retrieve(api, project, garbled["id"])["output"]) == {}
    empty = _create(api, project)
    assert api.post(_path(empty["url"]), content=b"").status_code == 200
    assert json.loads(_retrieve(api, project, empty["id"])["output"]) == {}
    bare_nan = _create(api, project)  # NaN is not JSON: {} as well
    assert api.post(_path(bare_nan["url"]), content=b'{"x": NaN}').status_code == 200
    assert json.loads(_retrieve(api, project, bare_nan["id"])["output"]) == {}
    unstorable = _create(api, project)  # JSON, but Postgres cannot store it: 400 naming it
    refused = api.post(_path(unstorable["url"]), content=b'{"note": "a\\u0000b"}')
    assert refused.status_code == 400
    assert "note" in refused.json()["error"]
    assert _retrieve(api, project, unstorable["id"])["status"] == "WAITING"


def test_the_callback_url_refuses_a_wrong_hash_an_unknown_token_and_bad_lengths(
    api: Any, project: ProjectKeys
) -> None:
    token = _create(api, project)
    path = _path(token["url"])
    wrong = api.post(path[:-4] + "0000", json={})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "Invalid URL, hash doesn't match"})
    # the hash is checked before the body is read
    wrong = api.post(path[:-4] + "0000", content=b'{"note": "a\\u0000b"}')
    assert wrong.status_code == 401
    unknown = api.post(f"{TOKENS}/waitpoint_nope/callback/{'0' * 40}", json={})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Waitpoint not found"})
    chunked = api.post(path, content=iter([b'{"a":', b"1}"]))  # no Content-Length
    assert (chunked.status_code, chunked.json()) == (
        411, {"error": "Content-Length header is required"})
    from reprise_server.shared.settings import get_settings

    too_big = get_settings().max_body_bytes + 1
    large = api.post(path, content=b" " * too_big)
    assert (large.status_code, large.json()) == (413, {"error": "Request body too large"})
    assert _retrieve(api, project, token["id"])["status"] == "WAITING"


def test_list_filters_and_pages_in_the_sdks_shapes(api: Any, project: ProjectKeys) -> None:
    made = [_create(api, project, tags=[f"n:{i}", "all"] if i % 2 else [f"n:{i}"],
                    idempotencyKey=f"key-{i}")["id"] for i in range(5)]
    api.post(f"{TOKENS}/{made[0]}/complete", json={"data": 1}, headers=project.headers())
    newest_first = list(reversed(made))

    def listed(**params: str) -> dict[str, Any]:
        response = api.get(TOKENS, params=params, headers=project.headers())
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = listed()
    assert [t["id"] for t in everything["data"]] == newest_first
    assert everything["pagination"] == {}
    item = everything["data"][0]
    assert set(item) == {"id", "url", "status", "tags", "createdAt", "idempotencyKey",
                         "idempotencyKeyExpiresAt"}
    first = listed(**{"page[size]": "2"})
    assert [t["id"] for t in first["data"]] == newest_first[:2]
    assert first["pagination"] == {"next": newest_first[1]}
    second = listed(**{"page[size]": "2", "page[after]": first["pagination"]["next"]})
    assert [t["id"] for t in second["data"]] == newest_first[2:4]
    assert second["pagination"] == {"next": newest_first[3], "previous": newest_first[2]}
    back = listed(**{"page[size]": "2", "page[before]": second["pagination"]["previous"]})
    assert [t["id"] for t in back["data"]] == newest_first[:2]

    def ids(**params: str) -> list[str]:
        return [t["id"] for t in listed(**params)["data"]]

    assert ids(**{"filter[status]": "COMPLETED"}) == [made[0]]
    assert ids(**{"filter[status]": "WAITING,TIMED_OUT"}) == newest_first[:4]
    assert ids(**{"filter[tags]": "all"}) == [made[3], made[1]]
    assert ids(**{"filter[tags]": "n:0,n:4"}) == [made[4], made[0]]
    assert ids(**{"filter[idempotencyKey]": "key-2"}) == [made[2]]
    assert ids(**{"filter[createdAt][period]": "1h"}) == newest_first
    assert ids(**{"filter[createdAt][from]": "4102444800000"}) == []  # 2100, in ms
    assert ids(**{"filter[createdAt][to]": "2000-01-01T00:00:00Z"}) == []
    assert ids(**{"filter[createdAt][from]": "2000-01-01T00:00:00.000Z"}) == newest_first


@pytest.mark.parametrize(("params", "named"), [
    ({"filter[status]": "WAITING,PENDING"}, "filter[status]: Invalid status values: PENDING"),
    ({"page[size]": "0"}, "page[size]"),
    ({"page[size]": "101"}, "page[size]"),
    ({"page[size]": "two"}, "page[size]"),
    ({"filter[createdAt][from]": "yesterday"}, "filter[createdAt][from]"),
    ({"filter[createdAt][to]": "soon"}, "filter[createdAt][to]"),
    ({"filter[createdAt][to]": "9" * 30}, "filter[createdAt][to]"),
    ({"filter[createdAt][period]": "a while"}, "filter[createdAt][period]"),
    ({"filter[colour]": "red"}, "filter[colour]"),
    ({"page[after]": "waitpoint_nope"}, "cursor"),
])
def test_bad_list_parameters_are_400_naming_them(
    api: Any, project: ProjectKeys, params: dict[str, str], named: str
) -> None:
    response = api.get(TOKENS, params=params, headers=project.headers())
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_a_timed_out_token_retrieves_as_timed_out_with_the_sdks_error(
    api: Any, project: ProjectKeys
) -> None:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.durable import service as durable

    token = _create(api, project, timeout="2020-01-01T00:00:00Z")
    with transaction() as session:
        durable.complete_due(session, token["id"])
    item = _retrieve(api, project, token["id"])
    assert item["status"] == "TIMED_OUT"
    assert item["outputIsError"] is True
    assert json.loads(item["output"])["code"] == "TRIGGER_WAITPOINT_TIMEOUT"
    timed_out = api.get(TOKENS, params={"filter[status]": "TIMED_OUT"},
                        headers=project.headers()).json()["data"]
    assert [t["id"] for t in timed_out] == [token["id"]]
    late = api.post(f"{TOKENS}/{token['id']}/complete", json={"data": 1},
                    headers=project.headers())
    assert late.json() == {"success": True}
    assert _retrieve(api, project, token["id"])["status"] == "TIMED_OUT"
