"""Waitpoint tokens in the domain (shared.durable.tokens): create (idempotency key with its
TTL, timeout, tags), retrieve, complete once, complete by callback hash, list newest first
with filters and cursors, and Trigger.dev's item and retrieve shapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from reprise_server.shared.db import transaction
from reprise_server.shared.durable import service as durable
from reprise_server.shared.durable import tokens
from reprise_server.shared.durable.models import Waitpoint
from reprise_server.shared.errors import InvalidInput, NotFound, Unprocessable
from reprise_server.shared.payloads import UnstorableValue
from reprise_server.shared.projects.service import AuthContext
from tests.support.fixtures import ProjectKeys

BASE = "https://reprise.example/"


@pytest.fixture
def auth(project: ProjectKeys) -> AuthContext:
    return AuthContext(project.project_id, project.environment_ids["dev"], "dev")


@pytest.fixture
def other(project: ProjectKeys) -> AuthContext:
    return AuthContext(project.project_id, project.environment_ids["prod"], "prod")


@pytest.fixture
def session() -> Iterator[Session]:
    with transaction() as session:
        yield session


def _age(session: Session, token_id: str, seconds: float) -> None:
    """Move a token's creation ``seconds`` into the past (ordering, periods)."""
    session.execute(update(Waitpoint).where(Waitpoint.id == token_id).values(
        created_at=datetime.now(UTC) - timedelta(seconds=seconds)))
    session.flush()
    session.expire_all()


def test_a_new_token_waits_and_has_trigger_dev_item_shape(
    session: Session, auth: AuthContext
) -> None:
    created = tokens.create_token(session, auth, tags=["b", "a", "a"])
    token = created.token
    assert not created.is_cached
    assert token.id.startswith("waitpoint_")
    assert token.status == "WAITING"
    item = tokens.token_item(token, BASE)
    assert item == {
        "id": token.id,
        "url": f"https://reprise.example/api/v1/waitpoints/tokens/{token.id}/callback/"
               f"{durable.callback_hash(token.id)}",
        "status": "WAITING",
        "tags": ["a", "b"],
        "createdAt": item["createdAt"],
        # the idempotency key's 30-day expiry only exists with a key
    }
    assert item["createdAt"].endswith("Z")
    assert tokens.retrieved_token(token, BASE) == item  # nothing to add while waiting


def test_tags_as_one_string_and_the_limits(session: Session, auth: AuthContext) -> None:
    assert tokens.create_token(session, auth, tags="solo").token.tags == ["solo"]
    with pytest.raises(Unprocessable, match="only have 10 tags"):
        tokens.create_token(session, auth, tags=[f"t{i}" for i in range(11)])
    with pytest.raises(InvalidInput, match="tags"):
        tokens.create_token(session, auth, tags=["x" * 129])
    with pytest.raises(InvalidInput, match="tags"):
        tokens.create_token(session, auth, tags=[""])


def test_an_idempotency_key_returns_the_same_token_until_its_ttl(
    session: Session, auth: AuthContext, other: AuthContext
) -> None:
    first = tokens.create_token(session, auth, idempotency_key="k1", idempotency_key_ttl="1h")
    again = tokens.create_token(session, auth, idempotency_key="k1", tags=["ignored"])
    assert (again.token.id, again.is_cached) == (first.token.id, True)
    item = tokens.token_item(first.token, BASE)
    assert item["idempotencyKey"] == "k1"
    assert "idempotencyKeyExpiresAt" in item
    # another environment has keys of its own
    assert tokens.create_token(session, other, idempotency_key="k1").token.id != first.token.id
    # past its TTL the key moves to a new token
    session.execute(update(Waitpoint).where(Waitpoint.id == first.token.id).values(
        idempotency_key_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    session.flush()
    session.expire_all()
    fresh = tokens.create_token(session, auth, idempotency_key="k1")
    assert (fresh.is_cached, fresh.token.id != first.token.id) == (False, True)
    assert session.get(Waitpoint, first.token.id).idempotency_key is None  # type: ignore[union-attr]


def test_bad_options_are_refused_naming_them(session: Session, auth: AuthContext) -> None:
    with pytest.raises(InvalidInput, match="idempotencyKeyTTL"):
        tokens.create_token(session, auth, idempotency_key="k", idempotency_key_ttl="forever")
    with pytest.raises(InvalidInput, match="idempotencyKeyTTL needs an idempotencyKey"):
        tokens.create_token(session, auth, idempotency_key_ttl="1h")
    with pytest.raises(InvalidInput, match="timeout"):
        tokens.create_token(session, auth, timeout="soon")


def test_a_timeout_is_the_tokens_timeout_at(session: Session, auth: AuthContext) -> None:
    token = tokens.create_token(session, auth, timeout="1h").token
    due = token.complete_after
    assert due is not None
    assert timedelta(minutes=59) < due - datetime.now(UTC) < timedelta(minutes=61)
    assert tokens.token_item(token, BASE)["timeoutAt"].endswith("Z")
    dated = tokens.create_token(session, auth, timeout="2030-01-02T03:04:05Z").token
    assert dated.complete_after == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_complete_once_keeps_the_first_data(session: Session, auth: AuthContext) -> None:
    token = tokens.create_token(session, auth).token
    assert tokens.complete_token(session, auth, token.id, {"approved": True})
    assert not tokens.complete_token(session, auth, token.id, {"approved": False})
    session.expire_all()
    done = tokens.get_token(session, auth, token.id)
    assert (done.status, done.output) == ("COMPLETED", {"approved": True})
    retrieved = tokens.retrieved_token(done, BASE)
    assert json.loads(retrieved["output"]) == {"approved": True}
    assert (retrieved["outputType"], retrieved["outputIsError"]) == ("application/json", False)
    assert retrieved["completedAt"].endswith("Z")


def test_complete_refuses_another_environments_token_and_unstorable_data(
    session: Session, auth: AuthContext, other: AuthContext
) -> None:
    token = tokens.create_token(session, auth).token
    with pytest.raises(NotFound):
        tokens.complete_token(session, other, token.id, {})
    with pytest.raises(NotFound):
        tokens.get_token(session, other, token.id)
    with pytest.raises(NotFound):
        tokens.get_token(session, auth, "waitpoint_nope")
    with pytest.raises(UnstorableValue, match="data"):
        tokens.complete_token(session, auth, token.id, {"text": "a\x00b"})
    assert tokens.get_token(session, auth, token.id).status == "WAITING"


def test_complete_by_callback_checks_the_hash(session: Session, auth: AuthContext) -> None:
    token = tokens.create_token(session, auth).token
    with pytest.raises(PermissionError):
        tokens.complete_by_callback(session, token.id, "0" * 40, {"x": 1})
    with pytest.raises(NotFound):
        tokens.complete_by_callback(session, "waitpoint_nope", "0" * 40, {})
    right = durable.callback_hash(token.id)
    assert tokens.complete_by_callback(session, token.id, right, {"x": 1})
    assert not tokens.complete_by_callback(session, token.id, right, {"x": 2})
    session.expire_all()
    assert tokens.get_token(session, auth, token.id).output == {"x": 1}


def test_a_timed_out_token_reads_as_the_sdks_timeout_error(
    session: Session, auth: AuthContext
) -> None:
    token = tokens.create_token(session, auth, timeout="2020-01-01T00:00:00Z").token
    assert durable.complete_due(session, token.id)
    session.expire_all()
    timed_out = tokens.get_token(session, auth, token.id)
    assert timed_out.status == "TIMED_OUT"
    retrieved = tokens.retrieved_token(timed_out, BASE)
    assert retrieved["outputIsError"] is True
    error = json.loads(retrieved["output"])
    assert error["code"] == "TRIGGER_WAITPOINT_TIMEOUT"
    assert error["message"].startswith("Waitpoint timed out at 20")
    # completing it later changes nothing
    assert not tokens.complete_token(session, auth, token.id, {"late": True})


def test_list_newest_first_with_filters(
    session: Session, auth: AuthContext, other: AuthContext
) -> None:
    old = tokens.create_token(session, auth, tags=["team:a"], idempotency_key="old").token
    _age(session, old.id, 7200)
    mid = tokens.create_token(session, auth, tags=["team:b"]).token
    _age(session, mid.id, 60)
    new = tokens.create_token(session, auth, tags=["team:a", "x"]).token
    tokens.create_token(session, other)
    tokens.complete_token(session, auth, mid.id, 1)

    def ids(**filters: object) -> list[str]:
        page = tokens.list_tokens(session, auth, tokens.TokenFilter(**filters))  # type: ignore[arg-type]
        return [t.id for t in page.tokens]

    assert ids() == [new.id, mid.id, old.id]
    assert ids(statuses=["COMPLETED"]) == [mid.id]
    assert ids(statuses=["WAITING", "TIMED_OUT"]) == [new.id, old.id]
    assert ids(tags=["team:a"]) == [new.id, old.id]
    assert ids(tags=["team:b", "x"]) == [new.id, mid.id]
    assert ids(idempotency_key="old") == [old.id]
    assert ids(period="1h") == [new.id, mid.id]
    now = datetime.now(UTC)
    assert ids(created_from=now - timedelta(minutes=30)) == [new.id, mid.id]
    assert ids(created_to=now - timedelta(minutes=30)) == [old.id]
    with pytest.raises(InvalidInput, match="period"):
        ids(period="a while")


def test_parse_statuses() -> None:
    assert tokens.parse_statuses(None) is None
    assert tokens.parse_statuses("WAITING,COMPLETED,WAITING") == ["WAITING", "COMPLETED"]
    with pytest.raises(InvalidInput, match="Invalid status values: PENDING, done"):
        tokens.parse_statuses("WAITING,PENDING,done")


def test_list_pages_forward_and_back_with_cursors(session: Session, auth: AuthContext) -> None:
    made = []
    for i in range(5):
        token = tokens.create_token(session, auth).token
        _age(session, token.id, 100 - i)
        made.append(token.id)
    newest_first = list(reversed(made))
    everything = tokens.TokenFilter()
    first = tokens.list_tokens(session, auth, everything, size=2)
    assert [t.id for t in first.tokens] == newest_first[:2]
    assert (first.next, first.previous) == (newest_first[1], None)
    second = tokens.list_tokens(session, auth, everything, size=2, after=first.next)
    assert [t.id for t in second.tokens] == newest_first[2:4]
    assert (second.next, second.previous) == (newest_first[3], newest_first[2])
    last = tokens.list_tokens(session, auth, everything, size=2, after=second.next)
    assert [t.id for t in last.tokens] == newest_first[4:]
    assert (last.next, last.previous) == (None, newest_first[4])
    back = tokens.list_tokens(session, auth, everything, size=2, before=last.previous)
    assert [t.id for t in back.tokens] == newest_first[2:4]
    assert (back.previous, back.next) == (newest_first[2], newest_first[3])
    front = tokens.list_tokens(session, auth, everything, size=2, before=back.previous)
    assert [t.id for t in front.tokens] == newest_first[:2]
    assert front.previous is None
    with pytest.raises(InvalidInput, match="page\\[size\\]"):
        tokens.list_tokens(session, auth, everything, size=101)
    with pytest.raises(InvalidInput, match="cursor"):
        tokens.list_tokens(session, auth, everything, after="waitpoint_nope")
