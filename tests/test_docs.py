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
    texts = {p: p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.py"),
                                        *(ROOT / "supervision").rglob("*.py"), *(ROOT / "actors").rglob("*.py"),
                                        *(p for p in (ROOT / "tests").rglob("*.py") if p.name != "test_docs.py")]}  # fmt: skip
    for path, text in texts.items():
        assert "../shared/" not in text or path.name == "NOTES.md", path
        assert not re.search(r"(?<!docs/)\bDESIGN\.md", text), f"{path} cites DESIGN.md: point at docs/design.md"
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", texts[ROOT / "README.md"]):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


# --- docs/events.md lists every event type thespian-otp writes, with its data keys -------------

EVENT_TYPE = r"[a-z_]+\.[a-z_]+"


def _statement_after(text: str, start: int) -> str:
    """The SQL from `start` to the end of its statement: a `;` at depth 0, or the `)` closing
    the CTE it sits in (quoted literals skipped)."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "'":
            i = text.index("'", i + 1)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                break
        elif char == ";" and depth == 0:
            break
        i += 1
    return text[start:i]


def written_events() -> list[tuple[set[str], set[str] | None]]:
    """Each statement of the package that appends events: (the types it writes, the keys of
    their `data` from the SQL's `jsonb_build_object`, None when unknown: a `NewEvent` in Python)."""
    statements: list[tuple[set[str], set[str] | None]] = []
    for path in sorted((ROOT / "actors" / "stores" / "sql").rglob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for match in re.finditer(r"INSERT\s+INTO\s+events\b", text, re.IGNORECASE):
            statement = _statement_after(text, match.end())
            keys = set()
            for call in re.finditer(r"jsonb_build_object\(", statement):
                keys |= set(re.findall(r"'([a-z_]+)'\s*,", _statement_after(statement, call.end())))
            statements.append((set(re.findall(rf"'({EVENT_TYPE})'", statement)), keys))
    for path in [*(ROOT / "actors").rglob("*.py"), *(ROOT / "supervision").rglob("*.py")]:
        for call in re.finditer(rf"NewEvent\(\s*(?:type\s*=\s*)?[\"']({EVENT_TYPE})[\"']", path.read_text()):
            statements.append(({call.group(1)}, None))
    return statements


def documented_events() -> dict[str, set[str]]:
    """docs/events.md's table of types: type -> the keys its last column names."""
    text = (ROOT / "docs" / "events.md").read_text()
    section = text.split("## Event types written by thespian-otp", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(rf"^\| `({EVENT_TYPE})` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([a-z_]+)`", match.group(2).rsplit("|", 1)[-1]))
    return rows


def test_the_event_page_documents_every_event_type_the_package_writes_and_its_data_keys():
    statements, documented = written_events(), documented_events()
    written = set().union(*(types for types, _ in statements))
    # the parser found what it must find (a regex gone blind would pass vacuously)
    assert {"job.completed", "job.failed", "job.retried", "job.rescued", "job.cancelled"} <= written
    assert {"id", "kind", "latency_ms", "by"} <= set().union(*(keys or set() for _, keys in statements))
    missing = sorted(written - set(documented))
    assert not missing, f"docs/events.md does not document the event types {missing}: add a row for each"
    stale = sorted(set(documented) - written)
    assert not stale, f"docs/events.md documents {stale}, which nothing writes"
    for types, keys in statements:
        if keys is not None:
            named = set().union(*(documented[t] for t in types))
            assert keys <= named, f"{sorted(types)}: data keys {sorted(keys - named)} are not in docs/events.md"
    for event_type, named in documented.items():
        keys = [k for types, k in statements if event_type in types]
        if None not in keys:
            extra = named - set().union(*keys)
            assert not extra, f"docs/events.md gives {event_type} the keys {sorted(extra)}, which nothing writes"
    assert "later version" not in (ROOT / "docs" / "events.md").read_text().lower()
