"""The dashboard (docs/dashboard.md): server-rendered pages under ``/dashboard``, an adapter like
the REST API — it calls the same services and shows the same errors."""

from reprise_server.api.dashboard.routes import favicon_router, router

__all__ = ["favicon_router", "router"]
