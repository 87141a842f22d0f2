"""The daily report as an HTML email, its plain-text alternative and its subject, from a day's figures.

Nothing is computed here beyond presentation: number and percent formats and the hourly bars' lengths.
"""

from __future__ import annotations

import css_inline
from jinja2 import Environment, PackageLoader, select_autoescape

from json_workflow.plural import plural
from json_workflow.reporting.figures import DayFigures

_env = Environment(
    loader=PackageLoader("json_workflow.reporting", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
# Mail clients drop <style> or ignore most of it; only @media rules can't be inlined, so they stay.
_inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def _number(n: int) -> str:
    return f"{n:,}"


def _percent(rate: float) -> str:
    """One decimal; a day with any failure never reads "100.0%"."""
    return f"{min(round(rate, 1), 99.9) if rate < 100 else rate:.1f}%"


def _categories(categories: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} ({_number(count)})" for name, count in categories)


def _bar(count: int, peak: int, full: int) -> int:
    """An hour's bar length, out of `full` for the busiest hour; an hour with any files gets at least 1."""
    return max(1, round(count * full / peak)) if count else 0


_env.filters.update(number=_number, percent=_percent, categories=_categories, plural=lambda word, n: plural(n, word))
_env.globals.update(bar=_bar)


# Names of unaccounted files listed in the email; more would risk Gmail's 102 KB clipping.
LISTED = 50


def _render(name: str, figures: DayFigures, title: str) -> str:
    peak = max((count for _, count in figures.hours), default=0)
    return _env.get_template(name).render(f=figures, title=title, peak=peak, listed=LISTED)


def html(figures: DayFigures, title: str) -> str:
    """The report as an HTML email body, its CSS inlined."""
    return _inliner.inline(_render("report.html", figures, title))


def text(figures: DayFigures, title: str) -> str:
    """The report as plain text, with the same figures as the HTML."""
    return _render("report.txt", figures, title)


def subject(figures: DayFigures, title: str) -> str:
    """'JSON Workflow Daily Report 2026-11-28: 247 processed, 2 errors'."""
    errors = f"{_number(figures.errors)} {plural(figures.errors, 'error')}"
    line = f"{title} {figures.day.isoformat()}: {_number(figures.processed)} processed, {errors}"
    # A lost file is the one thing worth seeing in the inbox list before the report is opened.
    return line + (f", {len(figures.unaccounted)} unaccounted" if figures.unaccounted else "")
