"""The Knit syncs page as one HTML document: tables per integration, inline SVG charts, no build step.

Rendered on the server so the page needs no build step and works inside Airflow's plugin iframe;
every value from the database goes through ``html.escape``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from html import escape
from itertools import groupby
from urllib.parse import quote, urlencode

from knit_provider.chaining import TABLE_COUNTS
from knit_provider.data_types import DataTypeSpec
from knit_provider.landing.integrations import Integration
from knit_provider.ui.syncs import DagRunLink, SyncRun

#: The page reloads itself this often, so a running sync's numbers and chart move on their own.
REFRESH_SECONDS = 30

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.25rem; color: #1f2933; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
p.note { color: #52606d; margin: 0 0 1rem; font-size: .85rem; }
nav.types { font-size: .85rem; margin: 0 0 1rem; } nav.types a, nav.types strong { margin-right: .6rem; }
table { border-collapse: collapse; width: 100%; font-size: .8rem; }
th, td { border-bottom: 1px solid #e4e7eb; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f5f7fa; font-weight: 600; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.t { white-space: nowrap; }
div.scroll { overflow-x: auto; }
code { font-size: .8rem; }
.state { border-radius: .6rem; padding: .05rem .45rem; font-size: .75rem; white-space: nowrap; }
.running { background: #e0f2fe; color: #075985; } .complete { background: #dcfce7; color: #166534; }
.bad { background: #fee2e2; color: #991b1b; } .muted { color: #7b8794; }
figure { margin: .75rem 0 0; } figcaption { font-size: .8rem; color: #52606d; }
svg text { font-size: 10px; fill: #52606d; }
html.dark body { background: #111827; color: #e5e7eb; } html.dark th { background: #1f2937; }
html.dark th, html.dark td { border-color: #374151; } html.dark a { color: #7cc4fa; }
details.changes summary { cursor: pointer; color: #52606d; } details.changes { margin-top: .15rem; }
html.dark details.changes summary { color: #9ca3af; }
html.dark p.note, html.dark figcaption, html.dark .muted, html.dark svg text { color: #9ca3af; fill: #9ca3af; }
"""


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = max(int(value.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


# Airflow shows the page in a sandboxed iframe that may not navigate the window it sits in, but may
# script it (same origin): a DAG-run link asks the UI's router to show the run, as its own links do.
# Opened on its own, or if that fails, the link is an ordinary one. The page also takes the UI's
# light or dark theme, which Airflow sets as a class on its root element.
_ROUTE_IN_AIRFLOW = """
try {
  if (window.parent.document.documentElement.classList.contains("dark")) {
    document.documentElement.classList.add("dark");
  }
} catch (error) {}
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest("a[data-airflow-route]");
  if (!link || window.parent === window) return;
  try {
    window.parent.history.pushState(null, "", link.getAttribute("href"));
    window.parent.dispatchEvent(new PopStateEvent("popstate"));
    event.preventDefault();
  } catch (error) {}
});
"""


def _state(run: SyncRun) -> str:
    if not run.complete:
        return '<span class="state running">running</span>'
    label = f"complete ({escape(run.completed_by)})" if run.completed_by else "complete"
    return f'<span class="state complete">{label}</span>'


def _filter_href(data_type: str | None) -> str:
    """This page with only ``data_type``'s runs (every type's when None): a relative link, so it works
    under any mount point and inside Airflow's iframe."""
    return "?" + urlencode({"data_type": data_type}) if data_type else "./"


def _dag_list(specs: Sequence[DataTypeSpec]) -> str:
    return ", ".join(f"<code>{escape(spec.dag_id)}</code>" for spec in specs)


def _dag_run_links(links: Sequence[DagRunLink], ui_root: str) -> str:
    items = []
    for link in links:
        href = f"{ui_root}/dags/{quote(link.dag_id, safe='')}/runs/{quote(link.run_id, safe='')}"
        state = f' <span class="muted">({escape(link.state)})</span>' if link.state else ""
        items.append(
            f'<a href="{escape(href)}" data-airflow-route>{escape(link.dag_id)} / {escape(link.run_id)}</a>'
            f'<br><span class="muted">{escape(link.role)}</span>{state}'
        )
    return "<br>".join(items) or '<span class="muted">none recorded</span>'


def _span(run: SyncRun) -> str:
    """Started → finished, the finish without its date when it is the same day."""
    started = _time(run.started)
    if run.complete_at is None:
        return started
    finish = run.complete_at.strftime(
        "%H:%M:%S" if run.complete_at.date() == run.started.date() else "%Y-%m-%d %H:%M:%S"
    )
    return f"{started}<br>→ {finish}"


def _ledger(run: SyncRun, nouns: dict[str, str]) -> str:
    """What normalization did, from the ledger: "12 jobs, 3 changed" (nothing when it was not read), then
    the rows it changed per table (:func:`_table_changes`)."""
    if run.records is None or run.records_changed is None:
        return ""
    noun = nouns.get(run.data_type or "", "records")
    counts = f'<br><span class="muted">{run.records:,} {escape(noun)}, {run.records_changed:,} changed</span>'
    return counts + _table_changes(run)


def _row_counts(counts: dict[str, int]) -> str:
    """Counts as "+2 ~1 &minus;1, 1 soft-deleted" (HTML), those that are not 0 (empty when all are)."""
    signs = (("+", "inserted"), ("~", "updated"), ("&minus;", "deleted"))
    text = " ".join(f"{sign}{counts[key]:,}" for sign, key in signs if counts[key])
    if counts["soft_deleted"]:
        text += f", {counts['soft_deleted']:,} soft-deleted"
    return text


# HTML already (an attribute's text): the minus sign as an entity, the source staying ASCII.
_TABLE_CHANGES_TITLE = (
    "rows the run's last normalization inserted (+), updated (~, soft deletes included) and deleted (&minus;), per "
    "table: its part of the counts its asset event carried; the rows it changed carry its knit_changed_seq"
)


def _table_changes(run: SyncRun) -> str:
    """The rows the run's last normalization changed: the totals, opened into one line per table changed and
    the change feed's value. Nothing for a run normalized before the feed."""
    if run.table_changes is None:
        return ""
    changed = [(table, _row_counts(counts)) for table, counts in sorted(run.table_changes.items())]
    lines = "<br>".join(f"<code>{escape(table)}</code> {text}" for table, text in changed if text)
    if not lines:
        return f'<br><span class="muted" title="{_TABLE_CHANGES_TITLE}">no rows changed</span>'
    totals = {key: sum(counts[key] for counts in run.table_changes.values()) for key in TABLE_COUNTS}
    # A value to query the change feed with, so written as it is (no thousands separator).
    seq = "" if run.changed_seq is None else f'<br><span class="muted">knit_changed_seq = {run.changed_seq}</span>'
    return (
        f'<details class="changes"><summary title="{_TABLE_CHANGES_TITLE}">rows {_row_counts(totals)}</summary>'
        f"{lines}{seq}</details>"
    )


def _row(run: SyncRun, ui_root: str, nouns: dict[str, str]) -> str:
    missing = run.missing
    landed = _number(run.record_events)
    if missing:
        landed += f'<br><span class="state bad" title="emitted by Knit but not landed">{missing:,} missing</span>'
    if run.dead_letters is None:
        dead = '<span class="muted" title="this role may not read the dead letters">?</span>'
    else:
        dead = f'<span class="state bad">{run.dead_letters:,}</span>' if run.dead_letters else "0"
    if run.normalized_at:
        normalized = (
            f'{_time(run.normalized_at)}<br><span class="muted">'
            f"{_duration(run.to_normalized)} after the first event</span>{_ledger(run, nouns)}"
        )
    else:
        normalized = '<span class="muted">not yet</span>'
    data_type = run.data_type or "?"
    kind = (
        f'{escape(run.sync_type or "?")}<br><a href="{escape(_filter_href(data_type))}" '
        f'title="only {escape(data_type)} runs">{escape(data_type)}</a>'
    )
    knit_counts = " / ".join(_number(n) or "?" for n in (run.processed, run.emitted, run.consumed))
    cells = [
        f'<code>{escape(run.sync_run_id)}</code><br><span class="muted">job {escape(run.sync_job_id or "?")}</span>',
        kind,
        _state(run),
        f'<td class="t">{_span(run)}',
        f'<td class="n">{landed}',
        f'<td class="n">{knit_counts}',
        f'<td class="n">{dead}',
        f'<td class="t">{normalized}',
        _dag_run_links(run.dag_runs, ui_root),
    ]
    return "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}" for cell in cells) + "</tr>"


_HEADER = (
    "<tr><th>Sync run</th><th>Sync / data type</th><th>State</th><th>Started → finished</th>"
    '<th title="distinct record events landed">Landed</th>'
    '<th title="Knit\'s own figures">Knit processed / emitted / consumed</th>'
    '<th title="signed bodies of this run kept unused, not replayed yet">Dead letters</th>'
    "<th title=\"how long after the run's first event landed, the records it named and changed, and the rows "
    'changed per table (as its asset event carried them)">Normalized</th>'
    "<th>DAG runs</th></tr>"
)


def chart(run: SyncRun, width: int = 560, height: int = 140) -> str:
    """An SVG line of events landed over time for one run (empty when it has fewer than two points)."""
    points = run.progress
    if len(points) < 2:
        return ""
    left, bottom, top, right = 56, 18, 8, 8
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 1e-6)
    peak = max(max(count for _, count in points), 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(at: datetime, count: int) -> str:
        x = left + plot_w * (at - start).total_seconds() / span
        y = top + plot_h * (1 - count / peak)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(at, count) for at, count in points)
    label = f"{run.record_events:,} events landed for {run.sync_run_id} between {_time(start)} and {_time(end)} UTC"
    return (
        f'<figure><svg role="img" aria-label="{escape(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(label)}</title>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#cbd2d9"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#cbd2d9"/>'
        f'<polyline fill="none" stroke="#017cee" stroke-width="2" points="{line}"/>'
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{peak:,}</text>'
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>'
        f'<text x="{left}" y="{height - 4}">{escape(start.strftime("%H:%M:%S"))}</text>'
        f'<text x="{width - right}" y="{height - 4}" text-anchor="end">{escape(end.strftime("%H:%M:%S"))}</text>'
        f"</svg><figcaption>Events landed over time, <code>{escape(run.sync_run_id)}</code> (running, "
        f"{_duration(end - start)} so far)</figcaption></figure>"
    )


_UNREADABLE_DEAD_LETTERS = (
    '<p class="note">Dead letters are shown as ? because the role of <code>knit_landing_default</code> may '
    "not read their ids: grant it <code>SELECT</code> on the id columns of <code>{schema}.dead_letters</code> "
    "(docs/security.md, <em>Who can read it</em>); the bodies can stay private.</p>"
)


_STATE_CLASS = {"active": "complete", "failed_validation": "bad", "disabled": "muted"}


def _registry_row(integration: Integration) -> str:
    state = escape(integration.state)
    errors = ""
    if integration.validation_errors is not None:
        errors = f"<code>{escape(json.dumps(integration.validation_errors, ensure_ascii=False))}</code>"
    cells = [
        f"<code>{escape(integration.integration_id)}</code>",
        f'<span class="state {_STATE_CLASS.get(integration.state, "running")}">{state}</span>',
        f'<td class="t">{_time(integration.first_seen_at)}',
        f'<td class="t">{_time(integration.activated_at)}',
        errors,
        # One text with its time, unlike the runs tables below, where the id alone names the run.
        f'{escape(integration.last_sync_run_id)} <span class="muted">{_time(integration.last_sync_run_at)}</span>'
        if integration.last_sync_run_id
        else '<span class="muted">none</span>',
        f'<td class="t">{_time(integration.last_event_at)}<br><span class="muted">'
        f"{escape(integration.last_event_type or '')}</span>",
        f'<td class="t">{_time(integration.onboarded_at)}'
        if integration.onboarded_at
        else '<span class="muted">not yet</span>',
    ]
    return "<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}" for cell in cells) + "</tr>"


def registry_section(
    integrations: Sequence[Integration] | None, landing_schema: str, specs: Sequence[DataTypeSpec]
) -> str:
    """The registry as a table: which customers are connected, and whether Knit validated them.

    ``specs`` are the enabled data types, whose DAGs sync every active integration daily."""
    if integrations is None:
        return (
            '<section><h2>Integrations</h2><p class="note">The role of <code>knit_landing_default</code> may not '
            f"read <code>{escape(landing_schema)}.integrations</code>: grant it <code>SELECT</code>.</p></section>"
        )
    if not integrations:
        return (
            '<section><h2>Integrations</h2><p class="muted">No integration yet: one appears when Knit activates '
            "it (a customer connected) or when one of its syncs lands.</p></section>"
        )
    header = (
        "<tr><th>Integration</th><th>State</th><th>First seen</th><th>Activated</th>"
        "<th>Validation errors (last activation)</th><th>Last sync run</th><th>Last event</th>"
        "<th>Onboarded</th></tr>"
    )
    rows = "".join(_registry_row(i) for i in integrations)
    return (
        "<section><h2>Integrations</h2>"
        f'<p class="note">The registry (<code>{escape(landing_schema)}.integrations</code>): active ones are '
        "synced by the onboarding DAG when Knit activates them, and by the daily run of each data type's DAG "
        f"({_dag_list(specs)}). <code>python -m knit_provider integrations disable|enable</code> "
        "steers it.</p>"
        f'<div class="scroll"><table><thead>{header}</thead><tbody>{rows}</tbody></table></div></section>'
    )


def type_filter(specs: Sequence[DataTypeSpec], data_type: str | None) -> str:
    """Links to all runs and to each enabled type's runs alone, the one shown in bold (also a type that
    is not enabled, when the query names one: Knit syncs types the provider does not normalize)."""
    choices: list[tuple[str | None, str]] = [(None, "all")]
    choices += [(spec.name, f"{spec.title} ({spec.name})") for spec in specs]
    if data_type is not None and data_type not in (spec.name for spec in specs):
        choices.append((data_type, data_type))
    items = [
        f"<strong>{escape(label)}</strong>"
        if name == data_type
        else f'<a href="{escape(_filter_href(name))}">{escape(label)}</a>'
        for name, label in choices
    ]
    return f'<nav class="types">Data type: {"".join(items)}</nav>'


def _nothing_landed(specs: Sequence[DataTypeSpec], data_type: str | None) -> str:
    """What to do when no run (of the chosen type) has landed: trigger its DAG, or check delivery."""
    delivery = "check that Knit delivers to this Airflow's <code>/knit/webhook</code>."
    if data_type is None:
        nothing, trigger = "No sync run has landed yet.", f"Trigger a data type's DAG ({_dag_list(specs)}), or"
    else:
        chosen = [spec for spec in specs if spec.name == data_type]
        nothing = f"No sync run of <code>{escape(data_type)}</code> has landed yet."
        trigger = f"Trigger {_dag_list(chosen)}, or" if chosen else "Start one, or"
    return f'<p class="muted">{nothing} {trigger} {delivery}</p>'


def render(
    runs: Sequence[SyncRun],
    *,
    now: datetime,
    ui_root: str,
    landing_schema: str,
    data_types: Sequence[DataTypeSpec],
    data_type: str | None = None,
    dead_letters_readable: bool = True,
    integrations: Sequence[Integration] | None = (),
) -> str:
    """The whole page; ``runs`` come grouped by integration, newest first within each, all of ``data_type``
    when it is given. ``data_types`` are the enabled types, offered as filters and named with their DAGs."""
    sections = [registry_section(integrations, landing_schema, data_types)]
    nouns = {spec.name: spec.records for spec in data_types}
    for integration_id, group in groupby(runs, key=lambda r: r.integration_id):
        rows = list(group)
        charts = "".join(chart(run) for run in rows)
        sections.append(
            f"<section><h2>Integration {escape(integration_id or '(none)')}</h2>"
            f'<div class="scroll"><table><thead>{_HEADER}</thead>'
            f"<tbody>{''.join(_row(r, ui_root, nouns) for r in rows)}</tbody></table></div>"
            f"{charts}</section>"
        )
    body = "".join(sections) if runs else sections[0] + _nothing_landed(data_types, data_type)
    shown = f" of data type <code>{escape(data_type)}</code>" if data_type else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}"><title>Knit syncs</title>'
        f"<style>{_STYLE}</style><script>{_ROUTE_IN_AIRFLOW}</script></head><body><h1>Knit syncs</h1>"
        f'<p class="note">Recent runs{shown} per integration from the landing store (schema '
        f"<code>{escape(landing_schema)}</code>), times in UTC, as of {_time(now)}; this page refreshes "
        f"every {REFRESH_SECONDS} s. <em>Landed</em> counts distinct record events; processed, emitted and "
        "consumed are Knit's own figures.</p>"
        f"{'' if dead_letters_readable else _UNREADABLE_DEAD_LETTERS.format(schema=escape(landing_schema))}"
        f"{type_filter(data_types, data_type)}{body}</body></html>"
    )
