"""The ``digest`` command (Typer). Errors are one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from digest import pipeline
from digest.config import Settings, get_settings
from digest.models import InvalidAddressError, cadence_text
from digest.sources import FetchError, ListingFormatError
from digest.store import session_factory, upgrade
from digest.store.db import create_db_engine, current_revision
from digest.store.papers import count_papers, list_papers
from digest.models import SubscriberStatus
from digest.store.subscribers import (
    SubscriberExistsError,
    SubscriberNotFoundError,
    add_subscriber,
    edit_subscriber,
    get_subscriber,
    list_subscribers,
    remove_subscriber,
)

app = typer.Typer(help="papers-digest: the trending ML papers of the day, in your inbox.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
papers_app = typer.Typer(help="Stored papers.", no_args_is_help=True)
subs_app = typer.Typer(help="Subscribers.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(papers_app, name="papers")
app.add_typer(subs_app, name="subscribers")

out = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

# Errors a user can cause and fix: shown as one line, exit code 2 (1 is left to unexpected failures).
USER_ERRORS: tuple[type[Exception], ...] = (
    ListingFormatError, FetchError, InvalidAddressError, SubscriberExistsError, SubscriberNotFoundError,
    ValueError, FileNotFoundError, IsADirectoryError, PermissionError,
)


MAX_ROWS_SHOWN = 50  # bad rows of an import listed one by one; the rest are counted

# Exit codes of `digest run` (and the other commands): documented in the README.
EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR, EXIT_SEND_STOPPED, EXIT_NO_LISTING = 0, 1, 2, 3, 4


def fail(message: object, code: int) -> typer.Exit:
    """Print one error line on stderr; the ``typer.Exit`` to raise with ``code``."""
    notes = "".join(f" ({n})" for n in getattr(message, "__notes__", []))
    err.print(f"[bold red]error:[/] {message}{notes}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of a run that ended with ``exc``."""
    from digest.send import TooManySendErrors

    if isinstance(exc, TooManySendErrors):
        return EXIT_SEND_STOPPED
    if isinstance(exc, USER_ERRORS):
        return EXIT_USER_ERROR
    return EXIT_FAILED


class _NotPrefect(logging.Filter):
    """Keeps Prefect's own records (engine, task and flow run logs, tracebacks) off the terminal; they still
    reach the Prefect API's log of the run, whose handlers sit on Prefect's own loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith("prefect")


def quiet_prefect(verbose: bool) -> None:
    """One line per outcome in the terminal unless ``verbose`` or the global ``digest --verbose`` (then
    Prefect's records too)."""
    root = logging.getLogger()
    verbose = verbose or root.level <= logging.INFO
    for handler in root.handlers:
        for f in [f for f in handler.filters if isinstance(f, _NotPrefect)]:
            handler.removeFilter(f)
        if not verbose:
            handler.addFilter(_NotPrefect())
    if verbose:
        root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)


def friendly(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            notes = "".join(f" ({n})" for n in getattr(e, "__notes__", []))
            err.print(f"[bold red]error:[/] {e}{notes}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return get_settings()


def parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


DateOpt = Annotated[str | None, typer.Option("--date", "-d", help="Listing date, YYYY-MM-DD.")]
WEEKDAY_HELP = ("Weekly: mon..sun (default fri), the weekday of the listing day whose digest they get, in "
                "DIGEST_TIMEZONE; mailed by the run after it (DIGEST_LAG_DAYS).")


def _version(value: bool) -> None:
    if value:
        from digest.config import package_version

        out.print(f"papers-digest {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@db_app.command("upgrade")
@friendly
def db_upgrade() -> None:
    """Create the database or migrate it to the newest schema."""
    engine = create_db_engine(settings().database_url)
    upgrade(engine)
    out.print(f"database at revision {current_revision(engine)}")


@app.command()
@friendly
def fetch(
    day: DateOpt = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Replay a saved listing (API JSON or page HTML).")] = None,
) -> None:
    """Fetch one day's Hugging Face Daily Papers listing and store it."""
    d = parse_day(day)
    if d is None and from_file is None:
        raise ValueError("give --date YYYY-MM-DD or --from-file FILE")
    s = settings()
    listing = pipeline.fetch(s, d, from_file)
    engine = pipeline.open_store(s)
    result = pipeline.store(engine, listing)
    if listing.is_empty:
        out.print(f"{listing.listing_date}: no listing that day (valid empty day), nothing stored")
        return
    with session_factory(engine)() as session:
        total = count_papers(session)
    t = Table(title=f"Daily Papers {listing.listing_date}")
    for col in ("fetched", "new", "updated", "unchanged", "total stored"):
        t.add_column(col, justify="right")
    r = result.report
    t.add_row(str(result.fetched), str(r.new), str(r.updated), str(r.unchanged), str(total))
    out.print(t)


@papers_app.command("list")
@friendly
def papers_list(day: DateOpt = None) -> None:
    """List stored papers, most upvoted first."""
    engine = pipeline.open_store(settings())
    with session_factory(engine)() as session:
        papers = list_papers(session, parse_day(day))
    t = Table()
    for col in ("date", "arXiv", "upvotes", "title"):
        t.add_column(col)
    for p in papers:
        t.add_row(p.listing_date.isoformat(), p.arxiv_id, str(p.upvotes), p.title)
    out.print(t)
    out.print(f"{len(papers)} papers")


@subs_app.command("add")
@friendly
def subscribers_add(
    email: str,
    interest: Annotated[list[str] | None, typer.Option("--interest", "-i", help="A topic you want (repeatable).")] = None,
    not_interested: Annotated[list[str] | None, typer.Option("--not-interested", help="A topic to push down (repeatable).")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Keyword a paper must contain (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Keyword that removes a paper (repeatable).")] = None,
    seed_paper: Annotated[list[str] | None, typer.Option(
        "--seed-paper", help="A paper you like: arXiv id (with or without version) or arXiv / Hugging Face link "
        "(repeatable). Papers not stored yet are fetched from Hugging Face.")] = None,
    max_papers: Annotated[int | None, typer.Option(
        "--max-papers", help="Papers per digest (default 10; weekly: DIGEST_WEEKLY_MAX_PAPERS, 25).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    seed_file: Annotated[Path | None, typer.Option(
        "--seed-file", help="A BibTeX file (Zotero, Mendeley export): its arXiv ids or titles become seed papers.",
    )] = None,
    frequency: Annotated[str, typer.Option("--frequency", help="daily, or weekly (on --weekday).")] = "daily",
    weekday: Annotated[str | None, typer.Option(
        "--weekday", help=WEEKDAY_HELP)] = None,
    thumbnails: Annotated[bool, typer.Option(
        "--thumbnails/--no-thumbnails", help="Show each paper's thumbnail image in the mail (default: no).")] = False,
    plain_text: Annotated[bool, typer.Option(
        "--plain-text/--no-plain-text", help="Send the plain text alone, no HTML (default: HTML and text).")] = False,
    follow_org: Annotated[list[str] | None, typer.Option(
        "--follow-org", help="A lab to follow: its Hugging Face name or display name, any case (repeatable).")] = None,
    follow_author: Annotated[list[str] | None, typer.Option(
        "--follow-author", help="An author to follow, by full name, any case (repeatable).")] = None,
    only_with_code: Annotated[bool, typer.Option(
        "--only-with-code/--no-only-with-code", help="Only papers with a GitHub repository (default: no).")] = False,
) -> None:
    """Add an active subscriber."""
    from digest.cadence import default_max_papers
    from digest.models import check_frequency, normalise_email

    from digest.seeds import resolve_seed_papers, seeds_from_bibtex

    s = settings()
    normalise_email(email)  # a bad address is refused before anything is fetched
    check_frequency(frequency)
    if max_papers is None:
        max_papers = default_max_papers(frequency, s.weekly_max_papers)
    engine = pipeline.open_store(s)
    seeds = resolve_seed_papers(engine, s, seed_paper or [])
    skipped = ""
    if seed_file is not None:
        found = seeds_from_bibtex(engine, s, seed_file)
        seeds += [a for a in found.ids if a not in seeds]
        if found.skipped:
            skipped = (f"skipped {len(found.skipped)} of {found.entries} BibTeX entries: "
                       + "; ".join(f"{key} ({why})" for key, why in found.skipped))
    with session_factory(engine).begin() as session:
        sub = add_subscriber(
            session, email, name=name, interests=interest or [], negative_interests=not_interested or [],
            include_keywords=include or [], exclude_keywords=exclude or [], seed_papers=seeds,
            max_papers=max_papers, frequency=frequency, weekday=weekday, thumbnails=thumbnails,
            plain_text=plain_text, follow_orgs=follow_org or [], follow_authors=follow_author or [],
            only_with_code=only_with_code,
        )
    out.print(f"added {sub.email} ({len(sub.interests)} interests, {len(sub.seed_papers)} seed papers, "
              f"{cadence_text(sub.frequency, sub.weekday)}, {sub.max_papers} papers a digest)", highlight=False,
              soft_wrap=True)
    _embed_interests(engine, s, [*sub.interests, *sub.negative_interests])
    if skipped:
        err.print(f"[yellow]warning:[/] {skipped}", highlight=False, soft_wrap=True)


@subs_app.command("list")
@friendly
def subscribers_list(
    status: Annotated[SubscriberStatus | None, typer.Option("--status", help="Only subscribers with this status.")] = None,
) -> None:
    """List subscribers (all, or those with one status: pending, active, unsubscribed, bounced)."""
    engine = pipeline.open_store(settings())
    with session_factory(engine)() as session:
        subs = list_subscribers(session, status)
    t = Table()
    for col in ("email", "status", "cadence", "max", "interests"):
        t.add_column(col)
    for s in subs:
        t.add_row(s.email, s.status.value, cadence_text(s.frequency, s.weekday), str(s.max_papers),
                  "; ".join(s.interests))
    out.print(t)
    out.print(f"{len(subs)} subscribers")


@subs_app.command("show")
@friendly
def subscribers_show(email: str) -> None:
    """Everything about one subscriber: preferences, status, and their last mails."""
    from digest.store.reports import mails_of

    engine = pipeline.open_store(settings())
    with session_factory(engine)() as session:
        sub = get_subscriber(session, email)
        mails = mails_of(session, sub.id) if sub.id is not None else []

    def listed(values: tuple[str, ...]) -> str:
        return "; ".join(values) if values else "-"

    t = Table(show_header=False, title=sub.email)
    for key, value in (
        ("name", sub.name or "-"), ("status", sub.status.value),
        ("created", f"{sub.created_at:%Y-%m-%d %H:%M}" if sub.created_at else "-"),
        ("confirmed", f"{sub.confirmed_at:%Y-%m-%d %H:%M}" if sub.confirmed_at else "-"),
        ("interests", listed(sub.interests)), ("not interested", listed(sub.negative_interests)),
        ("must include", listed(sub.include_keywords)), ("exclude", listed(sub.exclude_keywords)),
        ("seed papers", listed(sub.seed_papers)), ("max papers", str(sub.max_papers)),
        ("cadence", cadence_text(sub.frequency, sub.weekday)),
        ("thumbnails", "yes" if sub.thumbnails else "no"),
        ("plain text only", "yes" if sub.plain_text else "no"),
        ("follows labs", listed(sub.follow_orgs)), ("follows authors", listed(sub.follow_authors)),
        ("only with code", "yes" if sub.only_with_code else "no"),
    ):
        t.add_row(key, value)
    out.print(t)
    if not mails:
        out.print("no deliveries yet")
        return
    m = Table(title="last mails")
    for col in ("date", "kind", "status", "papers", "attempts", "sent / last error"):
        m.add_column(col)
    for line in mails:
        note = f"{line.sent_at:%Y-%m-%d %H:%M}" if line.sent_at else (line.last_error or "")
        m.add_row(line.digest_date.isoformat(), line.kind, line.status, str(line.papers), str(line.attempts), note)
    out.print(m)


@subs_app.command("edit")
@friendly
def subscribers_edit(
    email: str,
    interest: Annotated[list[str] | None, typer.Option("--interest", "-i", help="Replaces the interests (repeatable; \"\" clears).")] = None,
    not_interested: Annotated[list[str] | None, typer.Option("--not-interested", help="Replaces the topics pushed down.")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Replaces the keywords a paper must contain.")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Replaces the keywords that remove a paper.")] = None,
    seed_paper: Annotated[list[str] | None, typer.Option(
        "--seed-paper", help="Replaces the seed papers (arXiv ids or links, as for `subscribers add`).")] = None,
    max_papers: Annotated[int | None, typer.Option("--max-papers", help="Papers per digest.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="pending, active, unsubscribed or bounced; "
                                               "active un-suppresses a bounced address.")] = None,
    frequency: Annotated[str | None, typer.Option(
        "--frequency", help="daily or weekly; papers per digest follow it unless changed from the default.")] = None,
    weekday: Annotated[str | None, typer.Option("--weekday", help=WEEKDAY_HELP)] = None,
    thumbnails: Annotated[bool | None, typer.Option(
        "--thumbnails/--no-thumbnails", help="Show each paper's thumbnail image in the mail, or not.")] = None,
    plain_text: Annotated[bool | None, typer.Option(
        "--plain-text/--no-plain-text", help="Send the plain text alone (no HTML), or HTML and text.")] = None,
    follow_org: Annotated[list[str] | None, typer.Option(
        "--follow-org", help="Replaces the labs followed (repeatable; \"\" clears).")] = None,
    follow_author: Annotated[list[str] | None, typer.Option(
        "--follow-author", help="Replaces the authors followed (repeatable; \"\" clears).")] = None,
    only_with_code: Annotated[bool | None, typer.Option(
        "--only-with-code/--no-only-with-code", help="Only papers with a GitHub repository, or all.")] = None,
) -> None:
    """Change a subscriber: each option given replaces that field; the others stay as they are."""
    given: dict[str, object] = {
        "interests": interest, "negative_interests": not_interested, "include_keywords": include,
        "exclude_keywords": exclude, "seed_papers": seed_paper, "max_papers": max_papers, "name": name,
        "status": status, "frequency": frequency, "weekday": weekday, "thumbnails": thumbnails,
        "plain_text": plain_text, "follow_orgs": follow_org, "follow_authors": follow_author,
        "only_with_code": only_with_code,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        raise ValueError("nothing to change: give at least one option (digest subscribers edit --help)")
    s = settings()
    engine = pipeline.open_store(s)
    if frequency is not None and max_papers is None:  # papers per digest follow the cadence's default
        from digest.cadence import max_papers_after
        from digest.models import check_frequency

        check_frequency(frequency)
        with session_factory(engine)() as session:
            before = get_subscriber(session, email)
        after = max_papers_after(before.frequency, frequency, before.max_papers, None, s.weekly_max_papers)
        if after != before.max_papers:
            changes["max_papers"] = after
    if seed_paper is not None:
        from digest.seeds import resolve_seed_papers

        changes["seed_papers"] = resolve_seed_papers(engine, s, [p for p in seed_paper if p.strip()])
    with session_factory(engine).begin() as session:
        sub = edit_subscriber(session, email, **changes)
    note = ""
    if {"frequency", "weekday", "max_papers"} & set(changes):
        note = f" ({cadence_text(sub.frequency, sub.weekday)}, {sub.max_papers} papers a digest)"
    out.print(f"updated {sub.email}: {', '.join(k.replace('_', ' ') for k in changes)}{note}", highlight=False,
              soft_wrap=True)
    if "interests" in changes or "negative_interests" in changes:
        _embed_interests(engine, s, [*sub.interests, *sub.negative_interests])


def _embed_interests(engine: Any, s: Settings, texts: list[str], progress: bool = False) -> int:
    """Cache the vectors of interests just written (``pipeline.embed_interests``); when the model cannot
    run here, say so and leave them to the next plan, which encodes whatever is missing."""
    from digest.embed import ModelUnavailableError

    if not texts or not s.embed_interests_on_write:
        return 0
    try:
        if not progress:
            return pipeline.embed_interests(engine, s, texts)
        from rich.progress import Progress

        with Progress(console=err, transient=True, disable=not err.is_terminal) as bar:
            task = bar.add_task("embedding interests", total=None)
            return pipeline.embed_interests(engine, s, texts, progress=lambda n: bar.advance(task, n))
    except ModelUnavailableError as e:
        err.print(f"[yellow]warning:[/] interest vectors not computed ({e}); the next plan computes them",
                  highlight=False, soft_wrap=True)
        return 0


@subs_app.command("import")
@friendly
def subscribers_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header row: email (required), name, interests "
                                              "(several separated by ';'), max_papers, frequency "
                                              "(daily|weekly), weekday (mon..sun).")],
    update: Annotated[bool, typer.Option("--update", help="Update addresses already subscribed with the "
                                         "file's columns (default: skip them).")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse the whole file if any row is bad "
                                         "(default: report bad rows and import the rest).")] = False,
    pending: Annotated[bool, typer.Option("--pending", help="Store new addresses pending and queue a "
                                          "confirmation mail for each (default: active).")] = False,
    no_embed: Annotated[bool, typer.Option("--no-embed", help="Leave the interest vectors to the next "
                                           "plan (default: compute them now).")] = False,
) -> None:
    """Add subscribers in bulk from a CSV file (streamed in chunks). New addresses are active: import
    only a list you have consent for, or use --pending for a double opt-in."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from digest.subscriber_csv import count_rows, import_subscribers

    s = settings()
    engine = pipeline.open_store(s)
    total = count_rows(file) if file.is_file() else 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("importing", total=total)
        report = import_subscribers(engine, file, update=update, strict=strict, pending=pending,
                                    weekly_max_papers=s.weekly_max_papers,
                                    progress=lambda n: bar.advance(task, n))
    for line, why in report.invalid[:MAX_ROWS_SHOWN]:
        err.print(f"line {line}: {why}", highlight=False, soft_wrap=True, markup=False)
    if len(report.invalid) > MAX_ROWS_SHOWN:
        err.print(f"... and {len(report.invalid) - MAX_ROWS_SHOWN} more bad rows", highlight=False)
    embedded = 0 if no_embed else _embed_interests(engine, s, report.interests, progress=True)
    line = (f"imported {report.imported}, updated {report.updated}, skipped {report.skipped} (already "
            f"subscribed), invalid {len(report.invalid)}")
    if pending:
        line += f"; {report.confirmations} confirmation mails queued (`digest web` sends them)"
    if not no_embed and s.embed_interests_on_write:
        line += f"; embedded {embedded} interests"
    out.print(line, highlight=False, soft_wrap=True)


@subs_app.command("export")
@friendly
def subscribers_export(
    file: Annotated[Path, typer.Argument(help="Where to write the CSV (the import's format).")],
    status: Annotated[str, typer.Option("--status", help="Which subscribers: active (the default: an import "
                                        "makes everyone in the file active), pending, unsubscribed, bounced "
                                        "or all.")] = "active",
) -> None:
    """Write subscribers to a CSV file in the format `subscribers import` reads."""
    from digest.subscriber_csv import export_subscribers

    try:
        wanted = None if status == "all" else SubscriberStatus(status)
    except ValueError:
        raise ValueError(f"--status must be one of {', '.join(x.value for x in SubscriberStatus)} or all, "
                         f"not {status!r}") from None
    engine = pipeline.open_store(settings())
    n = export_subscribers(engine, file, wanted)
    out.print(f"exported {n} subscribers to {file}", highlight=False, soft_wrap=True)


@subs_app.command("remove")
@friendly
def subscribers_remove(email: str) -> None:
    """Delete a subscriber."""
    engine = pipeline.open_store(settings())
    with session_factory(engine).begin() as session:
        remove_subscriber(session, email)
    out.print(f"removed {email}", highlight=False)


@app.command()
@friendly
def send(
    day: Annotated[str, typer.Option("--date", "-d", help="Digest date, YYYY-MM-DD.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Send the planned digests of a date (safe to re-run: nothing is mailed twice). Exit 3 when the
    server refuses too much (rows stay planned); long waits are told on stderr."""
    import json
    import sys

    from digest.send import TooManySendErrors, send_day

    waits = logging.getLogger("digest.send")  # the sender logs what it waits for at INFO: show it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    waits.addHandler(handler)
    waits.setLevel(logging.INFO)
    waits.propagate = False
    s = settings()
    engine = pipeline.open_store(s)
    try:
        report = send_day(engine, s, parse_day(day))  # type: ignore[arg-type]
    except TooManySendErrors as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        if as_json:
            out.print_json(json.dumps(e.report.as_dict()))
        raise typer.Exit(3) from None
    finally:
        waits.removeHandler(handler)
    if leased := report.leased_line():
        err.print(f"{leased}: run `digest send --date {report.digest_date}` again after that",
                  highlight=False, soft_wrap=True)
    if as_json:
        out.print_json(json.dumps(report.as_dict()))
        return
    out.print(
        f"{report.digest_date}: sent {report.sent}, failed {report.failed}, suppressed {report.suppressed}, "
        f"retried {report.retried}, refused by the server {report.refused}, re-sent {report.resent}, "
        f"skipped {report.skipped}, still planned {report.pending}",
        highlight=False, soft_wrap=True,
    )


_STATUS_ORDER = ("planned", "sending", "sent", "failed", "skipped")


def _counts(counts: dict[str, int]) -> str:
    known = [(k, counts[k]) for k in _STATUS_ORDER if counts.get(k)]
    other = [(k, n) for k, n in sorted(counts.items()) if k not in _STATUS_ORDER and n]
    return ", ".join(f"{k} {n}" for k, n in known + other) or "nothing"


@app.command("status")
@friendly
def status_cmd(
    day: Annotated[str | None, typer.Option("--date", "-d", help="Digest date to detail (default: the "
                                            "scheduled one, today - DIGEST_LAG_DAYS).")] = None,
    days: Annotated[int, typer.Option("--days", help="How many past digest dates to list.")] = 7,
) -> None:
    """What an operator checks: the last runs (outbox by date, Prefect flow runs when an API answers), the
    day's outbox by status, suppressed addresses, and failures with their last error."""
    from digest.store.reports import counts_by_date, counts_by_kind, problems
    from flows.prefect_api import find_api, recent_flow_runs

    s = settings()
    d = parse_day(day) or pipeline.scheduled_day(s)
    engine = pipeline.open_store(s)
    with session_factory(engine)() as session:
        by_date = counts_by_date(session, days)
        kinds = counts_by_kind(session, d)
        bounced = list_subscribers(session, SubscriberStatus.bounced)
        trouble = problems(session)
    say = functools.partial(out.print, highlight=False, soft_wrap=True)
    say(f"Digests, last {days} dates in the outbox:" if by_date else "Digests: none in the outbox yet")
    for when, counts in by_date:
        say(f"  {when}: {_counts(counts)}")
    api, why = find_api()
    if api is None:
        say(f"Prefect flow runs: no Prefect API ({why})")
    else:
        runs = recent_flow_runs(api)
        say(f"Prefect flow runs of daily-digest ({api}):" if runs else f"Prefect flow runs: none yet ({api})")
        for r in runs:
            say(f"  {r.started}  {r.state:<10} {r.name}" + (f": {r.message}" if r.message else ""))
    say(f"Outbox on {d}: " + ("; ".join(f"{k} {_counts(c)}" for k, c in sorted(kinds.items())) or "nothing"))
    say(f"Suppressed addresses ({len(bounced)})" + (": " + ", ".join(b.email for b in bounced[:20]) if bounced else "")
        + (", ..." if len(bounced) > 20 else ""))
    say(f"Failures and retries ({len(trouble)}{'+' if len(trouble) == 20 else ''})" + (":" if trouble else ""))
    for p in trouble:
        say(f"  {p.email} {p.digest_date} {p.kind} {p.status} after {p.attempts} attempts: {p.last_error}")


def _not_due(sub: Any, day: date) -> str:
    from digest.cadence import next_due

    return (f"not due on {day}: {cadence_text(sub.frequency, sub.weekday)} "
            f"(next digest {next_due(sub.frequency, sub.weekday, day)})")


@app.command("rank")
@friendly
def rank_cmd(
    day: DateOpt = None,
    subscriber: Annotated[str | None, typer.Option("--subscriber", "-s", help="Only this subscriber (email).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """What each active subscriber (or one) would get in their digest of a date, with scores and reasons;
    sends and plans nothing.

    Cadence included: a weekly subscriber on another weekday is "not due". The window is their digest's:
    since their last one, with papers stored late, never a paper of an earlier digest. Embeds the window's
    papers that have no vector yet first."""
    import json

    from digest.store.subscribers import get_subscriber

    d = parse_day(day)
    if d is None:
        raise ValueError("give --date YYYY-MM-DD")
    s = settings()
    engine = pipeline.open_store(s)
    with session_factory(engine)() as session:
        subs = ([get_subscriber(session, subscriber)] if subscriber is not None
                else list_subscribers(session, SubscriberStatus.active))
    due = [sub for sub in subs if pipeline.due(sub, d)]
    result = pipeline.rank_with_history(engine, s, d, due)  # embeds the day's missing vectors in any case
    picks = result.picks
    if as_json:
        payload = [
            {"subscriber": sub.email, "cadence": cadence_text(sub.frequency, sub.weekday),
             "due": pipeline.due(sub, d),
             "picks": [{"paper_id": p.arxiv_id, "score": p.score, "reason": p.reason, "evidence": p.evidence}
                       for p in picks.get(sub.id or -1, [])]}
            for sub in subs
        ]
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    with session_factory(engine)() as session:
        titles = {p.arxiv_id: p.title for p in list_papers(session)}
    if result.embedded or result.interests_embedded or result.sentences_embedded:
        out.print(f"embedded {result.embedded} papers, {result.sentences_embedded} sentences, "
                  f"{result.interests_embedded} interests")
    for sub in subs:
        if not pipeline.due(sub, d):
            out.print(f"{sub.email} - {_not_due(sub, d)}", highlight=False, soft_wrap=True)
            continue
        t = Table(title=f"{sub.email} - {d} ({cadence_text(sub.frequency, sub.weekday)})")
        for col in ("#", "arXiv", "score", "reason", "title"):
            t.add_column(col)
        chosen = picks.get(sub.id or -1, [])
        for p in chosen:
            why = f"{p.reason}\n\u201c{p.evidence}\u201d" if p.evidence else p.reason
            t.add_row(str(p.rank), p.arxiv_id, f"{p.score:.3f}", why, titles.get(p.arxiv_id, ""))
        out.print(t)
        if not chosen:
            out.print("  nothing new above the relevance threshold in the window", highlight=False)


@app.command("plan")
@friendly
def plan_cmd(day: Annotated[str, typer.Option("--date", "-d", help="Digest date, YYYY-MM-DD.")]) -> None:
    """Embed what the day's window still lacks (papers, their sentences), rank every active subscriber due
    and write the day's deliveries (idempotent; sends nothing)."""
    s = settings()
    d = parse_day(day)
    if d is None:
        raise ValueError("give --date YYYY-MM-DD")
    engine = pipeline.open_store(s)
    # The embed step first, as the daily run does: the window's papers and their sentences (what is missing).
    embedded = pipeline.embed(engine, s, pipeline.candidate_start(s, d), d)
    result = pipeline.plan(engine, s, d)
    out.print(f"{result.day}: planned {result.planned}, nothing to send {result.skipped}, "
              f"already planned {result.existing} (embedded {embedded.papers + result.embedded} papers, "
              f"{embedded.sentences + result.sentences_embedded} sentences, {result.interests_embedded} interests)",
              highlight=False)


@app.command()
@friendly
def preview(
    email: str,
    day: DateOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write the HTML.")] = None,
) -> None:
    """Write the HTML of a subscriber's digest of a date (default: the scheduled day, today -
    DIGEST_LAG_DAYS) without sending or planning it (the text, .txt, for a subscriber who wants plain text
    only), and print its path. A weekly subscriber on another weekday is not due (one line, exit 2)."""
    import shutil
    import tempfile

    from digest.store.subscribers import get_subscriber

    s = settings()
    d = parse_day(day) or pipeline.scheduled_day(s)
    engine = pipeline.open_store(s)
    with session_factory(engine)() as session:
        sub = get_subscriber(session, email)
    if not pipeline.due(sub, d):
        raise ValueError(f"{sub.email} is {_not_due(sub, d)}")
    with tempfile.TemporaryDirectory() as tmp:
        written = pipeline.preview(engine, s, d, tmp, emails=[email])
        if not written:
            raise ValueError(f"no papers for {email} on {d}")
        target = out_file or Path(f"preview-{d.isoformat()}-{written[0].stem}{written[0].suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(written[0]), target)
    out.print(str(target.resolve()), highlight=False, soft_wrap=True)


@app.command()
@friendly
def run(
    day: Annotated[str | None, typer.Option(
        "--date", "-d", help="Listing day to mail, YYYY-MM-DD (default: today - DIGEST_LAG_DAYS in "
        "DIGEST_TIMEZONE, the last complete day; with --from-file: the file's day).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fetch, store, embed and plan; send nothing.")] = False,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Replay a saved listing.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs and tracebacks too.")] = False,
) -> None:
    """Run the daily digest flow (Prefect, locally) for a listing day.

    Exit codes: 0 done (an empty weekend too), 1 unexpected failure,
    2 bad input or configuration, 3 sending stopped (errors in a row),
    4 no listing on a weekday (the run ends Completed/NoListing).

    One line in the terminal; the trace is in the run's Prefect logs."""
    from flows.daily import NO_LISTING, daily_digest

    quiet_prefect(verbose)
    state, value = _run_flow(lambda: daily_digest(day=parse_day(day), listing_file=str(from_file) if from_file
                                                  else None, send=not dry_run, return_state=True), "the run")
    _print_summary(value)
    if state.name == NO_LISTING:
        err.print(f"[bold yellow]warning:[/] {state.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_NO_LISTING)


def _run_flow(call: Callable[[], Any], what: str) -> tuple[Any, Any]:
    """Run a flow (``call`` returns its final state) against a Prefect API, and give its state and result;
    a run that did not complete is one line and the exit code of its error."""
    from flows.prefect_api import PrefectApiError, prefect_api

    try:
        with prefect_api(scheduler=False):
            state = call()
    except PrefectApiError as e:
        raise fail(e, EXIT_USER_ERROR) from None
    value = state.result(raise_on_failure=False)
    if not state.is_completed():
        if isinstance(value, BaseException):
            raise fail(value, exit_code_for(value)) from None
        raise fail(f"{what} ended {state.name}: {state.message}", EXIT_FAILED)
    return state, value


def _print_summary(summary: Any) -> None:
    t = Table(title=f"Daily digest {summary.day}")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k, v in summary.rows():
        t.add_row(k, str(v))
    out.print(t)


@app.command()
@friendly
def backfill(
    start: str,
    end: str,
    send: Annotated[bool, typer.Option("--send", help="Plan and send catch-up digests too.")] = False,
    preview_dir: Annotated[Path | None, typer.Option("--preview", help="Write each digest as HTML here.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Fetch dates already stored again.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs and tracebacks too.")] = False,
) -> None:
    """Fetch, store and embed every date from START to END (throttled, resumable).

    Runs the Prefect flow backfill, on the daily flow's tasks: with --send each
    date is planned and sent as `digest run` would."""
    from flows.backfill import backfill as backfill_flow
    from flows.backfill import dates_between

    first, last = parse_day(start), parse_day(end)
    dates_between(first, last)  # type: ignore[arg-type]  # an empty range: one line, before Prefect starts
    quiet_prefect(verbose)
    _, value = _run_flow(lambda: backfill_flow(start=first, end=last, send=send, refresh=refresh,  # type: ignore[arg-type]
                                               preview_dir=str(preview_dir) if preview_dir else None,
                                               return_state=True), "the backfill")
    t = Table(title=f"Backfill {start} to {end}")
    for col in ("date", "status", "fetched", "new", "embedded", "sentences", "previews", "planned", "sent"):
        t.add_column(col)
    for r in value:
        t.add_row(r.day.isoformat(), r.status, str(r.fetched), str(r.new), str(r.embedded), str(r.sentences),
                  str(r.previews) if preview_dir else "", str(r.planned) if send else "", str(r.sent) if send else "")
    out.print(t)


@app.command()
@friendly
def serve(
    once: Annotated[bool, typer.Option("--once", help="Register the deployments and exit instead of serving.")] = False,
) -> None:
    """Serve the daily schedule (settings: cron, timezone) and the backfill.

    Uses PREFECT_API_URL when set, else its own Prefect server with a
    scheduler. A run whose process died is marked Crashed after 90 s
    without heartbeat, so the next run goes ahead (deploy/README.md)."""
    from flows.deployments import build_deployments, serve_forever
    from flows.prefect_api import PrefectApiError, prefect_api

    s = settings()
    try:
        if once:
            with prefect_api(scheduler=False):
                ids = build_deployments(s, apply=True)
            out.print(f"registered {len(ids)} deployments: daily-digest ({s.schedule_cron} {s.timezone}), backfill")
            return
        serve_forever(s, say=lambda line: out.print(line, highlight=False, soft_wrap=True))
    except PrefectApiError as e:
        raise fail(e, EXIT_USER_ERROR) from None


@app.command()
@friendly
def deploy(
    prefect_file: Annotated[Path, typer.Option("--prefect-file", help="The deployments file.")] = Path(
        "deploy/prefect.yaml"),
    pool: Annotated[str | None, typer.Option("--pool", help="Work pool (default: the file's, digest-pool).")] = None,
    home: Annotated[Path | None, typer.Option(
        "--home", help="Where the workers run the flows from (DIGEST_HOME; default: this repository).")] = None,
) -> None:
    """Register the deployments of deploy/prefect.yaml with the Prefect API (PREFECT_API_URL) for a work
    pool, the daily schedule from DIGEST_SCHEDULE_CRON and DIGEST_TIMEZONE, as `digest serve` reads them."""
    from flows.deployments import prefect_deploy

    s = settings()
    done = prefect_deploy(s, prefect_file, pool=pool, home=home)
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise fail(f"prefect deploy failed: {lines[-1] if lines else done.returncode}", EXIT_USER_ERROR)
    out.print(f"deployed daily-digest ({s.schedule_cron}, {s.timezone}) and backfill from {prefect_file}"
              + (f" to work pool {pool}" if pool else ""), highlight=False, soft_wrap=True)


@app.command()
@friendly
def demo(
    workdir: Annotated[Path, typer.Option("--dir", help="Where the demo database and outbox/ go.")] = Path("."),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's logs too.")] = False,
) -> None:
    """The whole day on the bundled real listing: fresh SQLite file, three subscribers, mails received
    by a real SMTP server on 127.0.0.1 and stored in ./outbox/. No network, no configuration."""
    from flows.demo import run_demo
    from flows.prefect_api import PrefectApiError

    quiet_prefect(verbose)
    try:
        result = run_demo(workdir)
    except PrefectApiError as e:
        raise fail(e, EXIT_USER_ERROR) from None
    if not result.mails:
        raise ValueError("the demo sent no mail")
    _teach(result)


def _teach(result: Any) -> None:
    """What the demo did, for whom and why, and what to try next."""
    from rich.markup import escape

    say = functools.partial(out.print, highlight=False, soft_wrap=True)
    s, outbox = result.summary, result.mails[0].parent
    say(f"[bold]papers-digest demo[/]: the digest of {result.day}, from a real Hugging Face listing of "
        f"{s.papers_fetched} papers shipped in the package, run by the Prefect flow daily-digest on a fresh "
        f"database ({escape(str(result.database))}).")
    say(f"{s.papers_embedded} papers embedded ({s.sentences_embedded} sentences of their abstracts, for the "
        f"explanations), {s.deliveries_planned} digests planned, {s.sent} sent "
        f"({s.failed} failed) to a real SMTP server on 127.0.0.1, which saved them in {escape(str(outbox))}/.")
    say("")
    say("[bold]Who got what[/]")
    for r in result.readers:
        asked = ("; ".join(f'"{escape(i)}"' for i in r.interests) if r.interests
                 else "nothing in particular, so they get the day's most upvoted papers")
        say(f"  {escape(r.name)} <{r.email}> asked for {asked}:")
        for n, (title, why) in enumerate(r.picks, 1):
            say(f"    {n}. {escape(title)}  [dim]({escape(why)})[/]")
        if r.papers > len(r.picks):
            say(f"    ... {r.papers - len(r.picks)} more in the mail")
        if r.preview is not None:
            say(f"    their mail: {escape(str(r.preview))}")
    first = result.readers[0].preview or result.previews[0]
    env = (f"DIGEST_DATABASE_URL=sqlite:///{result.database} DIGEST_OUTBOX_DIR={outbox} "
           f"DIGEST_DEMO_SECRET_FALLBACK=true")
    say("")
    say("[bold]Next steps[/]")
    say(f"  1. Read a digest: open {escape(str(first))} in a browser (the .eml beside it in a mail client).")
    say("  2. See what subscribers see (sign-up, preferences, unsubscribe) on http://127.0.0.1:8000:")
    say(f"       {escape(env)} digest web")
    say("  3. Add yourself and get your own digest of that day (no SMTP server set: it is written to the "
        "outbox folder as an .eml file):")
    say(f"       export {escape(env)}")
    say('       digest subscribers add you@example.org --interest "your topic"')
    say(f"       digest run --from-file {escape(str(result.listing))}")
    say("  4. For real: set DIGEST_SMTP_HOST, DIGEST_SECRET_KEY and DIGEST_PUBLIC_URL, then run `digest serve` "
        "(README.md, deploy/README.md).")


@app.command()
@friendly
def web(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
) -> None:
    """Serve the subscriber pages (subscribe, confirm, unsubscribe, feedback, preferences) with uvicorn.

    Links use DIGEST_PUBLIC_URL; DIGEST_SECRET_KEY is required (it signs every link)."""
    import uvicorn

    from digest.web import create_app

    s = settings()
    application = create_app(s)  # refuses to start without a secret key (unless the demo fallback is on)
    out.print(f"serving on http://{host}:{port} (public URL {s.public_url})", highlight=False, soft_wrap=True)
    # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any local peer as the client;
    # the app reads it itself, from DIGEST_WEB_TRUSTED_PROXIES only.
    uvicorn.run(application, host=host, port=port, log_level="info", proxy_headers=False)


if __name__ == "__main__":  # pragma: no cover
    app()
