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
from digest.addresses import InvalidAddressError
from digest.config import Settings
from digest.sources import FetchError, ListingFormatError
from digest.store import session_factory, upgrade
from digest.store.db import create_db_engine, current_revision
from digest.store.papers import count_papers, list_papers
from digest.store.subscribers import (
    SubscriberExistsError,
    SubscriberNotFoundError,
    add_subscriber,
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
    ValueError, FileNotFoundError,
)


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
    return Settings()


def parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


DateOpt = Annotated[str | None, typer.Option("--date", "-d", help="Listing date, YYYY-MM-DD.")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
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
    seed_paper: Annotated[list[str] | None, typer.Option("--seed-paper", help="arXiv id of a paper you like (repeatable).")] = None,
    max_papers: Annotated[int, typer.Option("--max-papers", help="Papers per digest.")] = 10,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
) -> None:
    """Add an active subscriber."""
    engine = pipeline.open_store(settings())
    with session_factory(engine).begin() as session:
        sub = add_subscriber(
            session, email, name=name, interests=interest or [], negative_interests=not_interested or [],
            include_keywords=include or [], exclude_keywords=exclude or [], seed_papers=seed_paper or [],
            max_papers=max_papers,
        )
    out.print(f"added {sub.email} ({len(sub.interests)} interests)", highlight=False)


@subs_app.command("list")
@friendly
def subscribers_list() -> None:
    """List subscribers."""
    engine = pipeline.open_store(settings())
    with session_factory(engine)() as session:
        subs = list_subscribers(session)
    t = Table()
    for col in ("email", "status", "max", "interests"):
        t.add_column(col)
    for s in subs:
        t.add_row(s.email, s.status.value, str(s.max_papers), "; ".join(s.interests))
    out.print(t)
    out.print(f"{len(subs)} subscribers")


@subs_app.command("remove")
@friendly
def subscribers_remove(email: str) -> None:
    """Delete a subscriber."""
    engine = pipeline.open_store(settings())
    with session_factory(engine).begin() as session:
        remove_subscriber(session, email)
    out.print(f"removed {email}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
