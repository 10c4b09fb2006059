"""/docs works offline and can send a key: its assets come from the api itself, and the
OpenAPI document declares bearer authentication."""

from __future__ import annotations

import re
from typing import Any


def test_the_docs_page_loads_every_asset_from_the_api_itself(api: Any) -> None:
    page = api.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    scripts = [a for a in assets if a.endswith((".js", ".css"))]
    assert scripts
    assert all(a.startswith("/") for a in scripts), scripts  # no CDN
    for asset in scripts:
        served = api.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000


def test_the_openapi_document_declares_bearer_auth(api: Any) -> None:
    schema = api.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["secretKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["secretKey"]["description"],
    }
    assert schema["security"] == [{"secretKey": []}]
