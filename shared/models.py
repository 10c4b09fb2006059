"""Every model, imported so that ``Base.metadata`` is complete (Alembic, tests)."""

from reprise_server.shared.batches.models import Batch, BatchItem
from reprise_server.shared.bulk.models import BulkAction, BulkActionItem
from reprise_server.shared.commands.models import Command
from reprise_server.shared.db import Base
from reprise_server.shared.durable.models import RunStep, Waitpoint, WaitpointBlock
from reprise_server.shared.flow.models import (
    AdmissionLine,
    ConcurrencyKey,
    ConcurrencyLimit,
    ConcurrencySlot,
    Queue,
)
from reprise_server.shared.overview.models import IgnoredErrorGroup
from reprise_server.shared.packets.models import Packet
from reprise_server.shared.projects.models import (
    ApiKey,
    Environment,
    Project,
    UsedPublicToken,
    VersionTask,
    WorkerVersion,
)
from reprise_server.shared.realtime.models import RealtimeListener
from reprise_server.shared.runlogs.models import RunLog
from reprise_server.shared.runs.models import Attempt, Checkpoint, Run
from reprise_server.shared.schedules.models import Schedule
from reprise_server.shared.sessions.models import DashboardSession, SignInLink

__all__ = [
    "AdmissionLine",
    "ApiKey",
    "Attempt",
    "Base",
    "Batch",
    "BatchItem",
    "BulkAction",
    "BulkActionItem",
    "Checkpoint",
    "Command",
    "ConcurrencyKey",
    "ConcurrencyLimit",
    "ConcurrencySlot",
    "DashboardSession",
    "Environment",
    "IgnoredErrorGroup",
    "Packet",
    "Project",
    "Queue",
    "RealtimeListener",
    "Run",
    "RunLog",
    "RunStep",
    "Schedule",
    "SignInLink",
    "UsedPublicToken",
    "VersionTask",
    "Waitpoint",
    "WaitpointBlock",
    "WorkerVersion",
]
