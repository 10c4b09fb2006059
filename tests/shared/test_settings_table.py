"""The settings table of docs/operations.md is the settings class's own (it cannot drift)."""

from __future__ import annotations

from reprise_server.shared.settings import Settings, settings_table
from tests.support.live_server import ROOT


def test_every_setting_is_documented_and_the_operations_table_is_current() -> None:
    assert all(field.description for field in Settings.model_fields.values())
    page = (ROOT / "docs" / "operations.md").read_text()
    documented = page.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->")[0]
    assert documented == settings_table(), (
        "docs/operations.md is stale: run `python -m reprise_server.shared.settings`"
    )
