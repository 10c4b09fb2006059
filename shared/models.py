"""Every model, imported so that ``Base.metadata`` is complete (Alembic, tests)."""

from shared.batches.models import Batch, BatchItem
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

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "Batch",
    "BatchItem",
    "Checkpoint",
    "Command",
    "Environment",
    "Packet",
    "Project",
    "Run",
    "Schedule",
    "UsedPublicToken",
    "VersionTask",
    "WorkerVersion",
]
