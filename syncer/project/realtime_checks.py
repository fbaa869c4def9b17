"""Can a segment be re-evaluated for some members only? (`events:` and `expires_at` need it.)

The real-time path runs the segment's query wrapped with a filter on the member key. That gives the
right answer only when a member's membership depends on their own rows: a query that ranks or limits
members against each other (``LIMIT``, ``TOP``, ``FETCH FIRST``, ``QUALIFY``, a window function without
``PARTITION BY``) or compares them with the whole population (``avg(...) OVER ()``) can change for member B
when member A's event arrives. Such a segment is refused for `events:` with the reason, and stays on its
batch cadence. The check reads the SQL text (comments and string literals removed); it does not parse it,
so it errs on the side of refusing.
"""

from __future__ import annotations

import re

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_CHECKS = (
    (re.compile(r"\bLIMIT\b|\bTOP\s*\(?\s*\d|\bFETCH\s+(FIRST|NEXT)\b|\bOFFSET\b", re.I),
     "its query limits the number of rows (LIMIT/TOP/FETCH/OFFSET), so one member's event can push another in or out"),
    (re.compile(r"\bQUALIFY\b", re.I), "its query filters on a window (QUALIFY) across members"),
    (re.compile(r"\bOVER\s*\((?![^)]*\bPARTITION\s+BY\b)", re.I),
     "its query uses a window function without PARTITION BY (a rank or total across all members)"),
)


def restriction_problem(sql: str) -> str | None:
    """Why the query cannot be re-run for some members only, or None when it can."""
    text = _STRINGS.sub("''", _COMMENTS.sub(" ", sql))
    for pattern, why in _CHECKS:
        if pattern.search(text):
            return (f"{why}: it cannot be re-evaluated for the members an event touches; drop `events:`/`expires_at`"
                    " (the segment then follows its cadence) or rewrite the query so each member's rows decide alone")
    return None
