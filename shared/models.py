"""Every model, imported so that ``Base.metadata`` is complete (Alembic, tests)."""

from shared.batches.models import Batch, BatchItem
from shared.bulk.models import BulkAction, BulkActionItem
from shared.commands.models import Command
from shared.db import Base
from shared.packets.models import Packet
from shared.projects.models import (
    ApiKey,
    Environment,
    Project,
    UsedPublicToken,
    VersionTask,
    WorkerVersion,
)
from shared.runs.models import Attempt, Checkpoint, Run
from shared.schedules.models import Schedule
from shared.sessions.models import DashboardSession, SignInLink

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "Batch",
    "BatchItem",
    "BulkAction",
    "BulkActionItem",
    "Checkpoint",
    "Command",
    "DashboardSession",
    "Environment",
    "Packet",
    "Project",
    "Run",
    "Schedule",
    "SignInLink",
    "UsedPublicToken",
    "VersionTask",
    "WorkerVersion",
]
