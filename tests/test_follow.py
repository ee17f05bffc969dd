"""Follow labs and authors, and "only papers with code" (issue 15): the ranking's boost, mask and reasons on
a real listing (tests/fixtures/hf), the reason as the mail shows it, and the CLI."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from digest.cli import app
from digest.explain import deciding_interest
from digest.models import Subscriber
from digest.store import create_db_engine, session_factory, upgrade
from digest.store.subscribers import add_subscriber, edit_subscriber, get_subscriber
from digest.store.tables import SubscriberRow
from digest.rank import PaperMatrix, Profile, RankParams, follow_key, rank_subscribers
from digest.render import build_context, reason_text, render_digest
from digest.signing import LinkSigner
from digest.sources.huggingface import load_listing_file

from .builders import DAY as MAIL_DAY
from .builders import HF_FIXTURES, LINK_KEY, SECRET, bare_settings, pick

LISTING = load_listing_file(HF_FIXTURES / "api_daily_papers_2026-08-18.collector.json")
DAY = LISTING.listing_date
BY_ID = {p.arxiv_id: p for p in LISTING.papers}
TENCENT = "2608.15265"  # Tencent ("tencent"), code, the most upvoted
SHANGHAI = ("2608.14783", "2608.15304")  # Shanghai AI Laboratory ("Shanghai-AI-Laboratory"): with code, without
NO_CODE = "2608.16887"  # Tongyi-MAI, no GitHub repository
YIXUAN = "2608.16072"  # first author Yixuan Wang, no code
PARAMS = RankParams(min_picks=0)
runner = CliRunner()


@pytest.fixture(scope="module")
def matrix() -> PaperMatrix:
    """The real papers, with random unit vectors (unrelated to each other: cosine ~0 in 384 dimensions)."""
    rng = np.random.default_rng(15)
    v = rng.standard_normal((len(LISTING.papers), 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return PaperMatrix.from_papers(LISTING.papers, {p.arxiv_id: v[i] for i, p in enumerate(LISTING.papers)})


def interested_in(m: PaperMatrix, arxiv_id: str, **kw: object) -> Profile:
    """A subscriber whose one interest is exactly that paper's vector."""
    vec = m.vectors[m.ids.index(arxiv_id)][None, :]
    return Profile(1, vec, ("interest: x",), np.zeros((0, 384), np.float32), **kw)  # type: ignore[arg-type]


def test_a_followed_lab_s_papers_are_picked_with_their_reason(matrix: PaperMatrix) -> None:
    plain = rank_subscribers([interested_in(matrix, TENCENT, max_papers=5)], matrix, DAY, params=PARAMS).picks(1)
    assert [(p.arxiv_id, p.reason) for p in plain] == [(TENCENT, "interest: x")]  # nothing else is relevant
    # By display name with another case and spacing, or by the HF handle: the same lab.
    for name in ("shanghai  AI laboratory", "Shanghai-AI-Laboratory"):
        prof = interested_in(matrix, TENCENT, max_papers=5, follows=(follow_key("org", name),))
        picks = rank_subscribers([prof], matrix, DAY, params=PARAMS).picks(1)
        assert [(p.arxiv_id, p.reason) for p in picks] == [
            (TENCENT, "interest: x"),
            *((a, "from Shanghai AI Laboratory, which you follow") for a in SHANGHAI),
        ]
    # Following the lab of the paper the interest picks anyway changes nothing in its reason...
    prof = interested_in(matrix, TENCENT, max_papers=5, follows=(follow_key("org", "Tencent"),))
    reasons = {p.arxiv_id: p.reason for p in rank_subscribers([prof], matrix, DAY, params=PARAMS).picks(1)}
    assert reasons[TENCENT] == "interest: x" and reasons["2608.16391"] == "from Tencent, which you follow"
    # ...and an author, any case and spacing: named as the paper names them.
    prof = interested_in(matrix, TENCENT, max_papers=5, follows=(follow_key("author", "  yixuan   WANG "),))
    reasons = {p.arxiv_id: p.reason for p in rank_subscribers([prof], matrix, DAY, params=PARAMS).picks(1)}
    assert reasons[YIXUAN] == "by Yixuan Wang, whom you follow"
    # The boost is bounded: off, nothing followed is picked.
    off = dataclasses.replace(PARAMS, follow_boost=0.0)
    prof = interested_in(matrix, TENCENT, max_papers=5, follows=(follow_key("org", "tencent"),))
    assert [p.arxiv_id for p in rank_subscribers([prof], matrix, DAY, params=off).picks(1)] == [TENCENT]


def test_without_interests_the_followed_papers_come_first(matrix: PaperMatrix) -> None:
    prof = Profile(1, np.zeros((0, 384), np.float32), (), np.zeros((0, 384), np.float32), max_papers=2,
                   follows=(follow_key("org", "tencent"),))
    picks = rank_subscribers([prof], matrix, DAY, params=PARAMS).picks(1)
    # The most upvoted paper is Tencent's: trending alone picked it; the second one is the follow's doing.
    assert [(p.arxiv_id, p.reason) for p in picks] == [(TENCENT, "trending"),
                                                      ("2608.16391", "from Tencent, which you follow")]


def test_only_with_code_never_picks_a_paper_without_code(matrix: PaperMatrix) -> None:
    without_code = {p.arxiv_id for p in LISTING.papers if not p.github_url}
    assert NO_CODE in without_code and len(without_code) > 5
    params = RankParams(min_picks=29)  # the top-up (closest, then trending) fills up: it must respect it too
    everyone = rank_subscribers([interested_in(matrix, NO_CODE, max_papers=29)], matrix, DAY, params=params)
    assert without_code <= {p.arxiv_id for p in everyone.picks(1)}
    profiles = [
        interested_in(matrix, NO_CODE, max_papers=29, only_with_code=True),
        dataclasses.replace(interested_in(matrix, TENCENT, max_papers=29, only_with_code=True,
                                          follows=(follow_key("org", "Shanghai AI Laboratory"),)),
                            subscriber_id=2),
        Profile(3, np.zeros((0, 384), np.float32), (), np.zeros((0, 384), np.float32), max_papers=29,
                only_with_code=True),
    ]
    ranking = rank_subscribers(profiles, matrix, DAY, params=params)
    for sid in (1, 2, 3):
        got = {p.arxiv_id for p in ranking.picks(sid)}
        assert got and not got & without_code, sid
    assert SHANGHAI[0] in {p.arxiv_id for p in ranking.picks(2)}


def test_the_mail_says_why_a_followed_paper_is_there() -> None:
    for reason, text in (("from Shanghai AI Laboratory, which you follow", "From Shanghai AI Laboratory, which you follow"),
                         ("by Yixuan Wang, whom you follow", "By Yixuan Wang, whom you follow")):
        assert reason_text(reason) == text
        assert deciding_interest(reason) is None  # no sentence of the abstract is quoted for a follow
    papers = [BY_ID[TENCENT], BY_ID[SHANGHAI[1]]]
    settings = bare_settings(public_url="https://digest.example")
    sub = Subscriber(email="ada@example.org", name="Ada", id=7, link_key=LINK_KEY)
    reasons = ["interest: LLM reasoning", "from Shanghai AI Laboratory, which you follow"]
    ctx = build_context(sub, MAIL_DAY, [(p, pick(p, r, why)) for r, (p, why) in enumerate(zip(papers, reasons), 1)],
                        settings, LinkSigner(SECRET, settings.public_url))
    r = render_digest(ctx)
    assert "From Shanghai AI Laboratory, which you follow" in r.html
    assert "From Shanghai AI Laboratory, which you follow" in " ".join(r.text.split())
    assert "Matches your interest" in r.text


@pytest.mark.all_backends
def test_cli_add_edit_show_round_trip(db_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_EMBED_INTERESTS_ON_WRITE": "false"}
    ok = runner.invoke(app, ["subscribers", "add", "a@example.com", "--interest", "robots", "--follow-org", "nvidia",
                             "--follow-org", " NVIDIA ", "--follow-org", "Shanghai AI Laboratory",
                             "--follow-author", "Jane Doe", "--only-with-code"], env=env)
    assert ok.exit_code == 0, ok.output
    shown = runner.invoke(app, ["subscribers", "show", "a@example.com"], env=env)
    assert shown.exit_code == 0, shown.output
    lines = {" ".join(line.strip(" │|").split()) for line in shown.output.splitlines()}
    assert any("follows labs" in line and "nvidia; Shanghai AI Laboratory" in line for line in lines), shown.output
    assert any("follows authors" in line and "Jane Doe" in line for line in lines)
    assert any("only with code" in line and "yes" in line for line in lines)
    edited = runner.invoke(app, ["subscribers", "edit", "a@example.com", "--follow-org", "", "--no-only-with-code",
                                 "--follow-author", "Yixuan Wang"], env=env)
    assert edited.exit_code == 0, edited.output
    shown = runner.invoke(app, ["subscribers", "show", "a@example.com"], env=env).output
    flat = " ".join(shown.split())
    assert "Yixuan Wang" in flat and "Jane Doe" not in flat and "nvidia" not in flat
    assert "robots" in flat  # what was not given stays


@pytest.mark.all_backends
def test_a_subscriber_stored_before_migration_0010_follows_nobody(db_url: str) -> None:
    """Migration 0010 leaves the follows of existing rows NULL: they read as none and can be edited."""
    engine = create_db_engine(db_url)
    upgrade(engine)
    with session_factory(engine).begin() as session:
        add_subscriber(session, "old@example.org", interests=["robots"])
        session.execute(update(SubscriberRow).values(follow_orgs=None, follow_authors=None))
    with session_factory(engine).begin() as session:
        old = get_subscriber(session, "old@example.org")
        assert (old.follow_orgs, old.follow_authors, old.only_with_code) == ((), (), False)
        new = edit_subscriber(session, "old@example.org", follow_authors=["Jane Doe", "jane  doe"])
        assert (new.follow_orgs, new.follow_authors, new.interests) == ((), ("Jane Doe",), ("robots",))
    engine.dispose()
