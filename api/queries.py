"""The query syntax of ``GET /api/v1/runs`` (``filter[...]``, ``page[...]``), parsed into a
typed :class:`shared.runs.listing.RunQuery`; the filter's vocabulary (both status
vocabularies, comma lists, dates) is :meth:`shared.runs.filters.RunFilter.build`'s.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from reprise_server.api.deps import ApiVersion, BearerCredential
from reprise_server.shared.errors import InvalidInput
from reprise_server.shared.ids import is_run_id
from reprise_server.shared.runs.filters import FilterWording, RunFilter, parse_period
from reprise_server.shared.runs.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PageRequest,
    RunQuery,
)

# How the list words a value it cannot use: the parameter's name, so a 400 says which.
_WORDING = FilterWording(
    unknown_status="filter[status] has an unknown status: {value}",
    created_from="filter[createdAt][from] must be an ISO-8601 date",
    created_to="filter[createdAt][to] must be an ISO-8601 date",
    period="filter[createdAt][period] must be a duration such as 1d",
    not_replayed="filter[notReplayed] must be true or false",
)


def _page_size(value: str | None) -> int:
    raw = value or str(DEFAULT_PAGE_SIZE)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page[size] must be a number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def _cursor(value: str | None) -> str | None:
    if not value:
        return None
    if not is_run_id(value):
        raise InvalidInput("page cursors are run ids")
    return value


def page_request(
    size: str | None, after: str | None, before: str | None, *, cursor_prefix: str
) -> PageRequest:
    """``page[size|after|before]`` of a list whose cursors are ids starting ``cursor_prefix``."""
    for name, value in (("page[after]", after), ("page[before]", before)):
        if value and not value.startswith(cursor_prefix):
            raise InvalidInput(f"{name} must be an id starting {cursor_prefix}")
    return PageRequest(size=_page_size(size), after=after or None, before=before or None)


class RunListQuery(BaseModel):
    """The list's query parameters as sent; :meth:`parse` gives the typed query (400 with a
    sentence naming the parameter for a value it cannot use)."""

    model_config = ConfigDict(populate_by_name=True)

    status: str | None = Field(None, alias="filter[status]",
                               description="Comma-separated statuses, either vocabulary")
    task_identifier: str | None = Field(None, alias="filter[taskIdentifier]")
    queue: str | None = Field(
        None, alias="filter[queue]",
        description="Comma-separated queues: task/<taskId> (a task's own) or a queue's name",
    )
    tag: str | None = Field(None, alias="filter[tag]")
    version: str | None = Field(None, alias="filter[version]")
    created_from: str | None = Field(None, alias="filter[createdAt][from]")
    created_to: str | None = Field(None, alias="filter[createdAt][to]")
    created_period: str | None = Field(None, alias="filter[createdAt][period]",
                                       description="Created within, e.g. 1d")
    is_test: str | None = Field(None, alias="filter[isTest]")
    batch: str | None = Field(None, alias="filter[batch]")
    schedule: str | None = Field(None, alias="filter[schedule]", description="A schedule id")
    bulk_action: str | None = Field(None, alias="filter[bulkAction]",
                                    description="Runs a bulk action produced or changed")
    not_replayed: str | None = Field(
        None, alias="filter[notReplayed]",
        description="true: runs no replay of which completed or is still under way",
    )
    page_size: str | None = Field(
        None, alias="page[size]", description=f"1 to {MAX_PAGE_SIZE} ({DEFAULT_PAGE_SIZE})"
    )
    page_after: str | None = Field(None, alias="page[after]", description="A run id")
    page_before: str | None = Field(None, alias="page[before]", description="A run id")

    def parse(self, api_version: str | None) -> RunQuery:
        run_filter = RunFilter.build(
            _WORDING,
            api_version=api_version,
            statuses=self.status,
            task_identifiers=self.task_identifier,
            queues=self.queue,
            tags=self.tag,
            versions=self.version,
            created_from=self.created_from,
            created_to=self.created_to,
            is_test=self.is_test,
            batch_id=self.batch,
            schedule_id=self.schedule,
            bulk_action_id=self.bulk_action,
            not_replayed=self.not_replayed,
        )
        page = PageRequest(
            size=_page_size(self.page_size),
            after=_cursor(self.page_after),
            before=_cursor(self.page_before),
        )
        return RunQuery(
            run_filter, page, created_within=parse_period(self.created_period, _WORDING)
        )


# The run-list filters the SDK can send that Reprise cannot apply (yet), each with why. A
# filter Reprise ignored would list every run, which a script then acts on, so each is a
# 400 naming it. To support one: add its field to RunListQuery (and RunFilter), then
# delete its entry here.
REFUSED_FILTERS: dict[str, str] = {
    "filter[machine]": "listing runs by machine is not supported",
    "filter[region]": "Reprise has one region: listing runs by region is not supported",
}

_KNOWN_PARAMETERS = frozenset(
    field.alias for field in RunListQuery.model_fields.values() if field.alias
)


def refuse_unknown_parameters(names: list[str]) -> None:
    """400 for a ``filter[...]``/``page[...]`` parameter the list cannot apply."""
    for name in names:
        if name in _KNOWN_PARAMETERS:
            continue
        if name in REFUSED_FILTERS:
            raise InvalidInput(f"{name} cannot be applied: {REFUSED_FILTERS[name]}")
        if name.startswith(("filter[", "page[")):
            raise InvalidInput(f"{name} is not a run-list parameter Reprise knows")


async def _run_list_query(
    params: Annotated[RunListQuery, Query()], credential: BearerCredential,
    request: Request, api_version: ApiVersion = None,
) -> RunQuery:
    try:
        refuse_unknown_parameters(list(request.query_params.keys()))
        return params.parse(api_version)
    except InvalidInput as exc:
        await credential.refuse(exc)


ListQuery = Annotated[RunQuery, Depends(_run_list_query)]

# A project's run list (``/api/v1/projects/{ref}/runs``) also takes ``filter[env]``: a secret
# key lists its own environment's runs, so the filter may name that environment only.
ENV_FILTER = "filter[env]"


async def _project_run_list_query(
    params: Annotated[RunListQuery, Query()], credential: BearerCredential,
    request: Request, api_version: ApiVersion = None,
) -> RunQuery:
    try:
        names = list(request.query_params.keys())
        refuse_unknown_parameters([name for name in names if name != ENV_FILTER])
        slugs = [part.strip() for value in request.query_params.getlist(ENV_FILTER)
                 for part in value.split(",") if part.strip()]
        if slugs:
            auth = await run_in_threadpool(credential.verify)
            for slug in slugs:
                if slug != auth.environment_slug:
                    raise InvalidInput(
                        f"{ENV_FILTER} names {slug!r}: this key lists the runs of its "
                        f"own environment ({auth.environment_slug}) only"
                    )
        return params.parse(api_version)
    except InvalidInput as exc:
        await credential.refuse(exc)


ProjectListQuery = Annotated[RunQuery, Depends(_project_run_list_query)]
