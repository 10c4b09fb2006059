"""The README's settings table is the settings class's own (it cannot drift)."""

from __future__ import annotations

from reprise_server.shared.settings import Settings, settings_table
from tests.support.live_server import ROOT


def test_every_setting_is_documented_and_the_readme_table_is_current() -> None:
    assert all(field.description for field in Settings.model_fields.values())
    readme = (ROOT / "README.md").read_text()
    documented = readme.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->")[0]
    assert documented == settings_table(), "README is stale: run `python -m shared.settings`"
