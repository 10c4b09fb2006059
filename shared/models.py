"""Every model, imported so that ``Base.metadata`` is complete (Alembic, tests)."""

from shared.bulk.models import BulkAction, BulkActionItem
from shared.commands.models import Command
from shared.db import Base
from shared.projects.models import ApiKey, Environment, Project, VersionTask, WorkerVersion
from shared.runs.models import Attempt, Checkpoint, Run
from shared.sessions.models import DashboardSession, SignInLink

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "BulkAction",
    "BulkActionItem",
    "Checkpoint",
    "Command",
    "DashboardSession",
    "Environment",
    "Project",
    "Run",
    "SignInLink",
    "VersionTask",
    "WorkerVersion",
]
