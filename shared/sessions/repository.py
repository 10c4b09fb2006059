"""All SQL for dashboard sessions and sign-in links."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from reprise_server.shared.projects.models import ApiKey, Environment
from reprise_server.shared.sessions.models import DashboardSession, SignInLink


def insert_session(session: Session, row: DashboardSession) -> None:
    session.add(row)
    session.flush()


def active_session(
    session: Session, session_id: str
) -> tuple[DashboardSession, Environment, datetime] | None:
    """The session, its environment and the database clock, while it has not expired and
    the key it was opened with is not revoked."""
    row = session.execute(
        select(DashboardSession, Environment, func.now())
        .join(ApiKey, ApiKey.id == DashboardSession.api_key_id)
        .join(Environment, Environment.id == DashboardSession.environment_id)
        .where(
            DashboardSession.id == session_id,
            DashboardSession.expires_at > func.now(),
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    return (row[0], row[1], row[2]) if row else None


def set_environment(session: Session, session_id: str, environment_id: str) -> None:
    session.execute(
        update(DashboardSession)
        .where(DashboardSession.id == session_id)
        .values(environment_id=environment_id)
    )


def delete_session(session: Session, session_id: str) -> None:
    session.execute(delete(DashboardSession).where(DashboardSession.id == session_id))


def insert_link(session: Session, link: SignInLink) -> None:
    session.add(link)
    session.flush()


def redeem_link(session: Session, link_id: str) -> str | None:
    """Mark an unused, unexpired link used (once: a compare-and-set); returns its key id."""
    return session.execute(
        update(SignInLink)
        .where(SignInLink.id == link_id, SignInLink.used_at.is_(None),
               SignInLink.expires_at > func.now())
        .values(used_at=func.now())
        .returning(SignInLink.api_key_id)
    ).scalar()


def active_key(session: Session, key_id: str) -> tuple[ApiKey, Environment] | None:
    row = session.execute(
        select(ApiKey, Environment)
        .join(Environment, Environment.id == ApiKey.environment_id)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row else None
