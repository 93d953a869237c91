"""Code snippets of the documentation (``docs/**/*.md`` and ``README.md``), read from the pages.

A fence may be preceded, on the line before it, by one marker (an HTML comment, invisible on GitHub and on
the site), in the convention ``docs/quickstart.md`` started:

- ``<!-- quickstart:NAME -->``: run by ``tests/integration/test_quickstart.py`` against a real Airflow;
  here it is still compiled (python) or its commands checked (bash).
- ``<!-- snippet:run -->`` (bash): executed, against the local grid simulator, by ``tests/docs/test_snippets.py``.
- ``<!-- snippet:skip REASON -->``: cannot run here (needs a cluster, a VTN, secrets ...): compiled or
  checked, not executed; the reason is required and shows in pytest's skip report.

Python fences run by default; bash fences are checked by default (each command against the real parser of
its tool) and run only when marked.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
#: Fence languages checked as another: ``sh`` is checked as bash.
_ALIASES = {"sh": "bash", "shell": "bash", "yml": "yaml"}
_MARKER = re.compile(r"<!-- (quickstart:[\w-]+|snippet:run|snippet:skip(?: (?P<reason>[^>]*?))?) -->\s*$")


@dataclass(frozen=True)
class Snippet:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    code: str
    #: ``quickstart:NAME``, ``snippet:run``, ``snippet:skip`` or ``None``.
    marker: str | None
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def quickstart(self) -> bool:
        return bool(self.marker and self.marker.startswith("quickstart:"))


def pages() -> list[Path]:
    return [*sorted(DOCS.rglob("*.md")), REPO / "README.md"]


def page_snippets(page: Path) -> list[Snippet]:
    text = page.read_text()
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        kind = marker.group(1) if marker else None
        reason = None
        if kind and kind.startswith("snippet:skip"):
            reason = (marker.group("reason") or "").strip() if marker else ""
            if not reason:
                raise AssertionError(f"{page}:{line}: <!-- snippet:skip --> needs a reason")
            kind = "snippet:skip"
        elif not marker and before.lstrip().startswith(("<!-- snippet", "<!--snippet")):
            raise AssertionError(f"{page}:{line}: unknown snippet marker {before.strip()!r}")
        lang = _ALIASES.get(match.group(1), match.group(1)) or "text"
        found.append(Snippet(page, line, lang, match.group(2), kind, reason))
    return found


def all_snippets() -> list[Snippet]:
    return [s for page in pages() for s in page_snippets(page)]


def shell_lines(code: str) -> list[str]:
    """The command lines of a shell block: continuation lines joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines: list[str] = []
    pending = ""
    for line in joined.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quoted string (JSON) goes on over the next line
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            lines.append(pending)
        pending = ""
    if pending:
        raise ValueError(f"unclosed quotation in a shell block: {pending!r}")
    return lines


def shell_commands(code: str) -> list[list[str]]:
    """Each command of a shell block as argv: comments dropped; pipes and ``&&`` split into their commands."""
    commands: list[list[str]] = []
    for line in shell_lines(code):
        lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if token and set(token) <= set("|&;"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands
