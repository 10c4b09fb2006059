"""Every model, imported so that ``Base.metadata`` is complete (Alembic, tests)."""

from shared.commands.models import Command
from shared.db import Base
from shared.projects.models import ApiKey, Environment, Project, VersionTask, WorkerVersion
from shared.runs.models import Attempt, Checkpoint, Run
from shared.schedules.models import Schedule

__all__ = [
    "ApiKey",
    "Attempt",
    "Base",
    "Checkpoint",
    "Command",
    "Environment",
    "Project",
    "Run",
    "Schedule",
    "VersionTask",
    "WorkerVersion",
]
