"""The documentation stands on its own: every public class has a docstring, and no page links
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_public_class_has_a_docstring_of_its_own():
    from docs.build import undocumented

    assert undocumented() == []


def test_no_document_or_docstring_points_outside_the_repository():
    texts = {p: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                                        *(ROOT / "supervision").rglob("*.py"), *(ROOT / "actors").rglob("*.py")]}  # fmt: skip
    for path, text in texts.items():
        assert "../shared/" not in text or path.name == "NOTES.md", path
        assert not re.search(r"(?<!docs/)\bDESIGN\.md", text), f"{path} cites DESIGN.md: point at docs/design.md"
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", texts[ROOT / "README.md"]):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link
