"""Seed papers from anywhere: what a subscriber pastes (an arXiv id with or without a version, an old-style
id, an arXiv, DOI or Hugging Face link) or exports from a reference manager (BibTeX: Zotero, Mendeley),
resolved to papers in the store. A paper the store does not have is fetched from the Hugging Face paper
API and stored; an id that does not parse or that HF does not know is refused with a one-line message.

Old-style arXiv ids (``hep-th/9901001``) parse and are looked up as they are; Hugging Face's paper pages
are keyed by new-style ids, so such a paper is refused unless HF answers for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, select

from digest.config import Settings
from digest.models import Paper, normalise_arxiv_id
from digest.sources import huggingface
from digest.store import session_factory
from digest.store.papers import papers_by_ids, upsert_papers
from digest.store.tables import PaperRow

_NEW = r"\d{4}\.\d{4,5}"
_OLD = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"
_ID = re.compile(rf"(?P<id>{_NEW}|{_OLD})(?:v\d+)?", re.IGNORECASE)
_DOI = re.compile(r"(?:doi:\s*)?10\.48550/arxiv\.(?P<rest>.+)", re.IGNORECASE)
_ARXIV_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org"}
_HF_HOSTS = {"huggingface.co", "www.huggingface.co", "hf.co"}
_DOI_HOSTS = {"doi.org", "dx.doi.org", "www.doi.org"}
_IN_TEXT = re.compile(rf"arxiv[:\s./]*(?:abs/)?(?P<id>{_NEW}|{_OLD})(?:v\d+)?", re.IGNORECASE)
EXAMPLES = "e.g. 2405.15682, 2405.15682v2, hep-th/9901001, an arxiv.org or huggingface.co/papers link"


class SeedError(ValueError):
    """A seed paper that cannot be used: the message is one line, for the subscriber or the operator."""


def _bare_id(text: str) -> str | None:
    m = _ID.fullmatch(text.strip())
    if m is None:
        return None
    aid = m.group("id")
    if "/" in aid:  # old style: lower-case archive, upper-case subject class (math.GT)
        archive, number = aid.split("/")
        name, _, cls = archive.partition(".")
        aid = f"{name.lower()}{'.' + cls.upper() if cls else ''}/{number}"
    return normalise_arxiv_id(aid)


def parse_paper_ref(raw: str) -> str:
    """The store's id (versionless arXiv id) of what a subscriber typed, or ``SeedError``."""
    text = raw.strip()
    if text.lower().startswith("arxiv:"):
        text = text[6:].strip()
    found = _bare_id(text)
    if found is None and (m := _DOI.fullmatch(text)):
        found = _bare_id(m.group("rest"))
    if found is None and "/" in text:
        url = urlsplit(text if "://" in text else f"https://{text}")
        host, path = (url.hostname or "").lower(), url.path.strip("/")
        if host in _ARXIV_HOSTS:
            for prefix in ("abs/", "pdf/", "html/"):
                if path.startswith(prefix):
                    rest = path[len(prefix):]
                    found = _bare_id(rest[:-4] if rest.endswith(".pdf") else rest)
        elif host in _HF_HOSTS and path.startswith("papers/"):
            found = _bare_id(path[len("papers/"):])
        elif host in _DOI_HOSTS and (m := _DOI.fullmatch(path)):
            found = _bare_id(m.group("rest"))
    if found is None:
        raise SeedError(f"{raw.strip()!r} is not an arXiv id ({EXAMPLES})")
    return found


def _fetch(ids: Sequence[str], settings: Settings, client: httpx.Client) -> tuple[list[Paper], list[str]]:
    """The papers HF has among ``ids``, and the ids it does not know."""
    found, unknown = [], []
    for aid in ids:
        paper = huggingface.fetch_paper(aid, settings, client)
        if paper is None:
            unknown.append(aid)
        else:
            found.append(paper)
    return found, unknown


def _store(engine: Engine, papers: Sequence[Paper]) -> None:
    if papers:
        with session_factory(engine).begin() as session:
            upsert_papers(session, papers)


def _unknown(aid: str) -> str:
    return f"{aid}: no such paper on Hugging Face"


def resolve_seed_papers(engine: Engine, settings: Settings, refs: Iterable[str],
                        client: httpx.Client | None = None) -> list[str]:
    """The ids of ``refs`` (each parsed by ``parse_paper_ref``), in order, without repeats. Papers missing
    from the store are fetched from Hugging Face and stored, all or none: the first ref that does not
    parse or that HF does not know raises ``SeedError`` and nothing is stored. ``FetchError`` when HF
    cannot be reached (after the listing's retries)."""
    ids = list(dict.fromkeys(parse_paper_ref(r) for r in refs))
    with session_factory(engine)() as session:
        known = papers_by_ids(session, ids).keys()
    missing = [a for a in ids if a not in known]
    if missing:
        own = client is None
        client = client or huggingface.make_client(settings)
        try:
            found, unknown = _fetch(missing, settings, client)
        finally:
            if own:
                client.close()
        if unknown:
            raise SeedError(_unknown(unknown[0]))
        _store(engine, found)
    return ids


# --------------------------------------------------------------------------------------------- BibTeX


def _norm_title(title: str) -> str:
    return " ".join(re.sub(r"[^\w]+", " ", title.replace("{", "").replace("}", "")).casefold().split())


def _entry_id(fields: dict[str, str]) -> str | None:
    """An arXiv id in an entry: eprint (Zotero, Mendeley, arXiv's own export), arxivid (Mendeley), a
    DOI 10.48550/arXiv.*, an arxiv.org URL, or 'arXiv:ID' in the note or journal."""
    prefix = fields.get("archiveprefix", "arxiv").strip().lower()
    candidates = []
    if prefix == "arxiv" and fields.get("eprint"):
        candidates.append(fields["eprint"])
    candidates += [fields.get(k, "") for k in ("arxivid", "doi", "url")]
    for ref in candidates:
        if ref.strip():
            try:
                return parse_paper_ref(ref)
            except SeedError:
                continue
    for k in ("note", "journal", "howpublished"):
        if m := _IN_TEXT.search(fields.get(k, "")):
            return _bare_id(m.group("id"))
    return None


@dataclass
class BibSeeds:
    ids: list[str] = field(default_factory=list)  # in the file's order, without repeats
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (entry key, why)
    entries: int = 0


def seeds_from_bibtex(engine: Engine, settings: Settings, path: str | Path,
                      client: httpx.Client | None = None) -> BibSeeds:
    """The seed papers of a BibTeX file: each entry's arXiv id, else its title (a stored paper with the
    same title, else a Hugging Face search whose result has exactly that title). Papers missing from the
    store are fetched and stored. Entries that give nothing are skipped, with why; a file without any
    entry raises ``SeedError``, a missing file ``FileNotFoundError``."""
    import bibtexparser

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    library = bibtexparser.parse_string(text)
    if not library.entries:
        raise SeedError(f"{path}: no BibTeX entries")
    out = BibSeeds(entries=len(library.entries))
    wanted: list[tuple[str, str | None, str]] = []  # key, id, title
    for entry in library.entries:
        fields = {f.key.lower(): str(f.value) for f in entry.fields}
        wanted.append((entry.key, _entry_id(fields), fields.get("title", "")))
    with session_factory(engine)() as session:
        by_title = {_norm_title(t): a for a, t in session.execute(select(PaperRow.arxiv_id, PaperRow.title))}
        known = set(papers_by_ids(session, [a for _, a, _ in wanted if a]))
    own = client is None
    client = client or huggingface.make_client(settings)
    fetched: list[Paper] = []
    try:
        for key, aid, title in wanted:
            if aid is None and title:
                aid = by_title.get(_norm_title(title))
                if aid is not None:
                    known.add(aid)
                else:
                    hits = [p for p in huggingface.search_papers(" ".join(title.replace("{", "").replace("}", "").split()),
                                                                 settings, client)
                            if _norm_title(p.title) == _norm_title(title)]
                    if hits:
                        fetched.append(hits[0])
                        aid = hits[0].arxiv_id
                        known.add(aid)
            if aid is None:
                out.skipped.append((key, "no arXiv id, and no paper with this title in the store or on Hugging Face"))
                continue
            if aid not in known:
                found, unknown = _fetch([aid], settings, client)
                if unknown:
                    out.skipped.append((key, _unknown(aid)))
                    continue
                fetched += found
                known.add(aid)
            if aid not in out.ids:
                out.ids.append(aid)
    finally:
        if own:
            client.close()
    _store(engine, fetched)
    return out
