"""Every reference resolves inside the repository: no tracked file cites a document the
repository does not have, the README stays a front door linking the docs, and every
relative Markdown link in the README and docs/ reaches a file (and heading) that exists."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
DOCS = ("docs/architecture.md", "docs/api.md", "docs/operations.md", "docs/tasks.md")

# References to documents outside the repository: a contract's numbered sections, the
# contract itself, this project's own issue numbers, seed documents, review labels, and the
# folder beside the repository those lived in. Another project's issues ("redis-py #3624",
# "owner/repo#123") carry a "#" and do not match.
OUTSIDE_PATTERNS = [
    "\u00a7\\s*\\d",  # a numbered section sign
    r"\bSPEC\b",
    r"(?i:\bthe spec\b)",
    r"(?i:\bissues? \d+)",
    r"(?i:\bseeds? `?00\d)",
    r"\(P\d\)",
    r"\.\./shared",
    r"reviews/architecture",
]
OUTSIDE = re.compile("|".join(OUTSIDE_PATTERNS))

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


@cache
def tracked_text_files() -> tuple[Path, ...]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    files = []
    for name in filter(None, names):
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return tuple(files)


def test_no_tracked_file_refers_to_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offending = []
    for path in tracked_text_files():
        if path.resolve() == this:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if OUTSIDE.search(line):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "references to documents outside the repository:\n" + "\n".join(
        offending
    )


def test_the_readme_is_a_front_door_that_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    for doc in DOCS:
        assert f"]({doc}" in readme, f"README.md does not link {doc}"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken)
