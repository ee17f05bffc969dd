"""The subscriber file of ``digest subscribers import`` and ``export``: a CSV with a header row.

The columns are a table, ``COLUMNS``: one ``Column`` per header with how a cell is parsed (validated by the
domain rules of ``digest.models``, a bad value raises ``ValueError``) and how a subscriber is written back.
A new column is one entry there: ``Column(header, field, parse, write)``, where ``field`` names the
``subscribers`` column it sets. An empty cell is the column's default (``parse("")``).

Import streams the file in chunks of ``CHUNK`` rows: per chunk, one query for the addresses already
stored, one executemany for the new ones and one for the updated ones. A bad row (an invalid address, a bad
number, an address seen on an earlier line) is reported with its line number and skipped; ``strict``
refuses the whole file instead (nothing is written). Columns the file does not have keep their stored
value on ``update`` and their default on a new subscriber.

Lists (interests) are separated by ``;``. Export writes a cell that a spreadsheet would run as a formula
(``=``, ``+``, ``-``, ``@``) with a leading apostrophe, and import takes it off again: a file goes round
unchanged.
"""

from __future__ import annotations

import csv
from contextlib import nullcontext
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from sqlalchemy import Engine

from digest.cadence import default_max_papers
from digest.models import (
    DEFAULT_WEEKDAY,
    MAX_PAPERS,
    WEEKDAYS,
    InvalidAddressError,
    Subscriber,
    SubscriberStatus,
    check_frequency,
    check_max_papers,
    clean_list,
    clean_name,
    normalise_email,
    parse_weekday,
)
from digest.store import session_factory
from digest.store.outbox import enqueue_confirmations
from digest.store.subscribers import clean_follows, ids_by_email, insert_subscribers, iter_subscribers, update_subscribers

CHUNK = 2000  # rows read, checked against the store and written together
LIST_SEPARATOR = ";"
MAX_CELL_CHARS = 10_000  # a cell longer than this is a bad row, whatever its column


@dataclass(frozen=True)
class Column:
    """One column of the file: its ``header``, the ``subscribers`` column (``field``) it sets, how a cell
    becomes that value (``parse``: ``ValueError`` with a short reason when it cannot), and how a
    subscriber's value is written back (``write``)."""

    header: str
    field: str
    parse: Callable[[str], object]
    write: Callable[[Subscriber], str]
    required: bool = False


def _email(cell: str) -> str:
    if not cell.strip():
        raise ValueError("no email address")
    return normalise_email(cell)


def _list(what: str) -> Callable[[str], list[str]]:
    def parse(cell: str) -> list[str]:
        return clean_list(cell.split(LIST_SEPARATOR), what)

    return parse


def _max_papers(cell: str) -> int | None:
    text = cell.strip()
    if not text:
        return None  # the cadence's default (``_cadence``)
    try:
        return check_max_papers(int(text))
    except ValueError:
        raise ValueError(f"max_papers must be a whole number between 1 and {MAX_PAPERS}, not {text!r}") from None


def _frequency(cell: str) -> str:
    return check_frequency(cell.strip().lower() or "daily")


def _weekday(cell: str) -> int | None:
    return parse_weekday(cell) if cell.strip() else None


def _cadence(values: dict[str, object], weekly_max_papers: int) -> None:
    """The rules across the cadence's columns of one row: a weekly digest without a weekday comes on the
    default one (Friday), a weekday needs ``weekly``, and an empty ``max_papers`` is the cadence's default."""
    frequency = values.get("frequency")
    if values.get("weekday") is not None and frequency != "weekly":
        raise ValueError("weekday: only a weekly digest has a weekday (set frequency to weekly)")
    if frequency == "weekly" and values.get("weekday") is None:
        values["weekday"] = DEFAULT_WEEKDAY
    elif "frequency" in values and "weekday" not in values:
        values["weekday"] = None
    if frequency == "weekly" and "max_papers" not in values:
        values["max_papers"] = weekly_max_papers
    if "max_papers" in values and values["max_papers"] is None:
        values["max_papers"] = default_max_papers(str(frequency or "daily"), weekly_max_papers)


def _follows(what: str) -> Callable[[str], list[str]]:
    def parse(cell: str) -> list[str]:
        return clean_follows(cell.split(LIST_SEPARATOR), what)

    return parse


def _yes_no(what: str) -> Callable[[str], bool]:
    def parse(cell: str) -> bool:
        text = cell.strip().lower()
        if text in ("", "false", "no", "0"):
            return False
        if text in ("true", "yes", "1"):
            return True
        raise ValueError(f"{what} must be true, false, yes, no, 1 or 0 (empty: false), not {cell.strip()!r}")

    return parse


def _joined(values: Sequence[str]) -> str:
    return f"{LIST_SEPARATOR} ".join(values)


COLUMNS: tuple[Column, ...] = (
    Column("email", "email", _email, lambda s: s.email, required=True),
    Column("name", "name", clean_name, lambda s: s.name or ""),
    Column("interests", "interests", _list("interests"), lambda s: _joined(s.interests)),
    Column("max_papers", "max_papers", _max_papers, lambda s: str(s.max_papers)),
    Column("frequency", "frequency", _frequency, lambda s: s.frequency),
    Column("weekday", "weekday", _weekday, lambda s: WEEKDAYS[s.weekday] if s.weekday is not None else ""),
    Column("follow_orgs", "follow_orgs", _follows("followed labs"), lambda s: _joined(s.follow_orgs)),
    Column("follow_authors", "follow_authors", _follows("followed authors"), lambda s: _joined(s.follow_authors)),
    Column("only_with_code", "only_with_code", _yes_no("only_with_code"),
           lambda s: "true" if s.only_with_code else "false"),
)


class SubscriberFileError(ValueError):
    """The file cannot be imported at all (no header, an unknown column, ``strict`` and bad rows)."""


@dataclass
class ImportReport:
    imported: int = 0
    updated: int = 0
    skipped: int = 0  # already stored (without ``update``)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason), in file order
    confirmations: int = 0  # confirmation mails queued (``pending``)
    interests: list[str] = field(default_factory=list)  # the interest texts written (to embed)


def _header(row: Sequence[str]) -> list[Column]:
    by_header = {c.header: c for c in COLUMNS}
    names = [h.strip().lower() for h in row]
    unknown = [h for h in names if h not in by_header]
    if unknown:
        raise SubscriberFileError(f"unknown column {unknown[0]!r} in the header (the columns are "
                                  f"{', '.join(c.header for c in COLUMNS)})")
    if len(set(names)) < len(names):
        dup = next(h for h in names if names.count(h) > 1)
        raise SubscriberFileError(f"column {dup!r} appears twice in the header")
    missing = [c.header for c in COLUMNS if c.required and c.header not in names]
    if missing:
        raise SubscriberFileError(f"the header has no {missing[0]!r} column (the first row must name the "
                                  f"columns: {', '.join(c.header for c in COLUMNS)})")
    return [by_header[h] for h in names]


# A cell a spreadsheet would run as a formula is written with a leading apostrophe, which import takes off.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _guard(cell: str) -> str:
    return "'" + cell if cell.startswith(_FORMULA) else cell


def _unguard(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA) else cell


def _rows(f: IO[str]) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(f)
    for row in reader:
        yield reader.line_num, row


def _parse(columns: Sequence[Column], cells: Sequence[str], weekly_max_papers: int = 25) -> dict[str, object]:
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns):]):
        raise ValueError(f"{len(cells)} cells, the header has {len(columns)} columns")
    values: dict[str, object] = {}
    for col, cell in zip(columns, [*cells, *[""] * (len(columns) - len(cells))]):
        if len(cell) > MAX_CELL_CHARS:
            raise ValueError(f"{col.header}: longer than {MAX_CELL_CHARS} characters")
        try:
            values[col.field] = col.parse(_unguard(cell))
        except InvalidAddressError as e:
            raise ValueError(str(e)) from None
        except ValueError as e:
            raise ValueError(f"{col.header}: {e}" if col.header not in str(e) else str(e)) from None
    _cadence(values, weekly_max_papers)
    return values


def count_rows(path: str | Path) -> int:
    """Lines after the header (a progress bar's total; a quoted line break makes it an upper bound)."""
    with open(path, "rb") as f:
        return max(sum(1 for _ in f) - 1, 0)


def import_subscribers(
    engine: Engine,
    path: str | Path,
    *,
    update: bool = False,
    strict: bool = False,
    pending: bool = False,
    today: date | None = None,
    progress: Callable[[int], None] | None = None,
    weekly_max_papers: int = 25,
) -> ImportReport:
    """Import the subscriber file at ``path`` (UTF-8, a byte-order mark allowed): new addresses are stored
    ``active`` (the operator has their consent), or ``pending`` with a confirmation mail queued in the
    outbox when ``pending``; stored addresses are skipped, or updated with the file's columns when
    ``update``. A weekly subscriber's empty ``max_papers`` is ``weekly_max_papers``. ``progress(n)`` is told after each chunk of ``n`` lines. Raises ``SubscriberFileError``
    when the file cannot be read as a subscriber file, or (``strict``) has a bad row: then nothing is
    written. Interest vectors are not computed here (``ImportReport.interests``: the texts written)."""
    from datetime import datetime, timezone

    day = today or datetime.now(timezone.utc).date()
    status = SubscriberStatus.pending if pending else SubscriberStatus.active
    report = ImportReport()
    seen: dict[str, int] = {}  # address -> line it was first read on
    interests: dict[str, None] = {}
    sessions = session_factory(engine)
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise SubscriberFileError(f"cannot read {path}: {e.strerror or e}") from None
    with f, (sessions.begin() if strict else nullcontext()) as whole:
        rows = _rows(f)
        try:
            first = next(rows, None)
        except (csv.Error, UnicodeDecodeError) as e:
            raise SubscriberFileError(f"{path} is not a UTF-8 CSV file: {e}") from None
        if first is None or not any(c.strip() for c in first[1]):
            raise SubscriberFileError(f"{path} is empty: the first row must name the columns "
                                      f"({', '.join(c.header for c in COLUMNS)})")
        columns = _header(first[1])
        while True:
            try:
                block = _read_chunk(rows, CHUNK)
            except (csv.Error, UnicodeDecodeError) as e:
                raise SubscriberFileError(f"{path} is not a UTF-8 CSV file: {e}") from None
            if not block:
                break
            good: list[tuple[int, dict[str, object]]] = []
            for line, cells in block:
                if not any(c.strip() for c in cells):
                    continue  # a blank line
                try:
                    values = _parse(columns, cells, weekly_max_papers)
                except ValueError as e:
                    report.invalid.append((line, str(e)))
                    continue
                email = str(values["email"])
                if email in seen:
                    report.invalid.append((line, f"{email} is already on line {seen[email]}"))
                    continue
                seen[email] = line
                good.append((line, values))
            if good:
                session = whole if whole is not None else sessions()
                try:
                    _write(session, good, update, status, day, report)
                    if whole is None:
                        session.commit()
                finally:
                    if whole is None:
                        session.close()
                for _, values in good:
                    for t in values.get("interests", ()):  # type: ignore[attr-defined]
                        interests[t] = None
            if progress is not None:
                progress(len(block))
        if strict and report.invalid:
            whole.rollback()  # type: ignore[union-attr]
            lines = "; ".join(f"line {n}: {why}" for n, why in report.invalid[:5])
            more = f" (and {len(report.invalid) - 5} more)" if len(report.invalid) > 5 else ""
            raise SubscriberFileError(f"{len(report.invalid)} bad rows, nothing imported (--strict): {lines}{more}")
    report.interests = list(interests)
    return report


def _read_chunk(rows: Iterator[tuple[int, list[str]]], n: int) -> list[tuple[int, list[str]]]:
    block = []
    for item in rows:
        block.append(item)
        if len(block) >= n:
            break
    return block


def _write(session, good: list[tuple[int, dict[str, object]]], update: bool, status: SubscriberStatus,  # type: ignore[no-untyped-def]
           day: date, report: ImportReport) -> None:
    known = ids_by_email(session, [str(v["email"]) for _, v in good])
    new = [v for _, v in good if v["email"] not in known]
    old = [v for _, v in good if v["email"] in known]
    inserted = insert_subscribers(session, new, status) if new else {}
    report.imported += len(inserted)
    report.skipped += len(new) - len(inserted)  # stored by another writer meanwhile
    if update:
        update_subscribers(session, [{**{k: v for k, v in values.items() if k != "email"},
                                      "id": known[str(values["email"])]} for values in old])
        report.updated += len(old)
    else:
        report.skipped += len(old)
    if status is SubscriberStatus.pending and inserted:
        report.confirmations += enqueue_confirmations(session, list(inserted.values()), day)


def export_subscribers(engine: Engine, path: str | Path, status: SubscriberStatus | None = SubscriberStatus.active,
                       progress: Callable[[int], None] | None = None) -> int:
    """Write the subscribers (with ``status``; all when ``None``) to ``path`` in the import's format, every
    column of ``COLUMNS``; returns how many. Streams the table in chunks."""
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f, session_factory(engine)() as session:
        writer = csv.writer(f)
        writer.writerow([c.header for c in COLUMNS])
        batch = []
        for sub in iter_subscribers(session, status):
            batch.append([_guard(c.write(sub)) for c in COLUMNS])
            if len(batch) >= CHUNK:
                writer.writerows(batch)
                n += len(batch)
                if progress is not None:
                    progress(len(batch))
                batch = []
        writer.writerows(batch)
        n += len(batch)
        if progress is not None and batch:
            progress(len(batch))
    return n
