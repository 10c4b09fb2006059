"""The header's search box (:mod:`shared.search`): a run id opens the run; a string that
names one thing opens it (the run of an idempotency key, the runs list filtered by a tag
or a batch); one that names several, or nothing, answers a small results page."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from reprise_server.api.dashboard.web import PREFIX, page, signed_in, to_sign_in
from reprise_server.api.deps import DbSession
from reprise_server.shared.search import search

router = APIRouter()


@router.get("/search")
def search_page(request: Request, session: DbSession) -> Response:
    signed = signed_in(request, session, request.query_params.get("env"))
    if signed is None:
        return to_sign_in(request)
    env = signed.auth.environment_slug
    found = search(session, signed.auth, request.query_params.get("q", ""))
    if found.kinds == 1:
        if found.run is not None:
            return RedirectResponse(f"{PREFIX}/runs/{found.run.id}?env={env}", status_code=303)
        if len(found.keyed) == 1:
            return RedirectResponse(f"{PREFIX}/runs/{found.keyed[0].id}?env={env}",
                                    status_code=303)
        if found.tagged:
            return RedirectResponse(f"{PREFIX}/runs?env={env}&tag={quote(found.query)}",
                                    status_code=303)
        if found.batched:
            return RedirectResponse(f"{PREFIX}/runs?env={env}&batch={quote(found.query)}",
                                    status_code=303)
    return page("search.html", 200 if not found.nothing else 404, signed=signed, found=found,
                search_query=found.query,
                env_slug=env, now=signed.now)
