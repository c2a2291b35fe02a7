"""The documentation: README's links reach files and headings that exist, every page of docs/ is
in the site's navigation, and the site builds with `mkdocs build --strict` (a broken link or
anchor between the pages is an error)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor Markdown (Python-Markdown's toc, GitHub) gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", text)).strip("-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())  # no headings inside code blocks
    return {slug(m[1]) for m in re.finditer(r"(?m)^#+ (.+)$", text)}


def test_every_link_of_the_readme_reaches_a_file_and_heading():
    readme = ROOT / "README.md"
    broken = []
    for target in LINK.findall(readme.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = (ROOT / path) if path else readme
        if not page.exists() or (anchor and anchor not in anchors(page)):
            broken.append(target)
    assert not broken, broken
    assert len(LINK.findall(readme.read_text())) > 15  # the README does link its pages


def test_every_page_is_in_the_navigation_and_the_readme_links_every_reference_page():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {page for item in nav for page in item.values()}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert listed == pages
    readme = (ROOT / "README.md").read_text()
    assert {p for p in pages if f"](docs/{p}" not in readme} == {"index.md"}


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                             "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "guarantees" / "index.html").exists()
    assert not (ROOT / "site").exists()
