"""Per-mail cost of a 10-paper digest: signed links, Jinja render, css-inline, MIME build, flatten; and of the
richest mail (thumbnails, the sentence beside each interest, badges) and a plain-text-only one.

Run: .venv/bin/python bench/render_speed.py   (prints medians; nothing is asserted)
     .venv/bin/python bench/render_speed.py --compare REV   (the whole per-mail pipeline of the plain 10-paper
     digest, this tree against git revision REV: each in its own process, alternated, 3 rounds, median ratio)
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

from digest.config import Settings
from digest.mail import ListHeaders, build_mail, message_id
from digest.models import Paper, Pick, Subscriber
from jinja2 import Environment

from digest.render import SUMMARY_CHARS, _inliner, _vars, build_context, environment, render_digest, template_loader
from digest.signing import LinkSigner

N = 500
DAY = date(2026, 8, 18)
ABSTRACT = ("We propose a method for efficient long-context reasoning in language models that retrieves "
            "relevant passages and composes them; experiments on multi-hop benchmarks show gains. ") * 6


def median_ms(fn: Callable[[], Any], n: int = N) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def common_case() -> tuple[Settings, LinkSigner, list[tuple[Paper, Pick]], Subscriber]:
    """The plain 10-paper digest, built from what every revision's API has (for --compare)."""
    settings = Settings(_env_file=None, public_url="https://digest.example")  # type: ignore[call-arg]
    signer = LinkSigner("bench-secret", settings.public_url)
    papers = [
        Paper(arxiv_id=f"2408.{i:05d}", title=f"Efficient long-context reasoning — part {i}", abstract=ABSTRACT,
              authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"), listing_date=DAY,
              upvotes=50 - i, github_url=f"https://github.com/ex/r{i}", project_url=f"https://ex.org/{i}")
        for i in range(10)
    ]
    pairs = [(p, Pick(p.arxiv_id, i + 1, 0.9 - i / 100, "interest: LLM reasoning")) for i, p in enumerate(papers)]
    return settings, signer, pairs, Subscriber(email="ada@example.org", name="Ada", id=7, link_key="bench-link-key")


def whole_ms(settings: Settings, signer: LinkSigner, pairs: list[tuple[Paper, Pick]], sub: Subscriber,
             n: int = N) -> float:
    """Median ms of the whole per-mail pipeline: signed links, render, MIME bytes."""

    def whole() -> bytes:
        c = build_context(sub, DAY, pairs, settings, signer)
        return build_mail(
            render_digest(c), to_addr=sub.email, to_name=sub.name, from_addr=settings.mail_from,
            message_id=message_id(7, DAY, "digest.example"),
            list_headers=ListHeaders(settings.list_id, c.unsubscribe_url),
        ).data

    return median_ms(whole, n)


def compare(rev: str) -> None:
    """This tree against ``rev``: each measured in its own process (PYTHONPATH puts that tree's ``digest``
    first), alternated, 3 rounds."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(["git", "-C", root, "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
        trees = {"baseline " + rev: base, "product": root}
        runs: dict[str, list[float]] = {k: [] for k in trees}
        for _ in range(3):
            for label, tree in trees.items():
                env = {**os.environ, "PYTHONPATH": tree}
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--whole-only"], env=env, cwd=tree,
                                     check=True, capture_output=True, text=True).stdout
                runs[label].append(float(out.strip()))
    print("whole pipeline per mail, plain 10-paper digest (median of 500 runs per process; 3 processes each):")
    for label, values in runs.items():
        print(f"  {label:<20} " + "  ".join(f"{v:.3f}" for v in values) + f"   median {statistics.median(values):.3f} ms")
    ratios = [p / b for p, b in zip(runs["product"], runs["baseline " + rev])]
    print(f"  product / baseline, per round: {', '.join(f'{r:.2f}' for r in ratios)}; median ratio "
          f"{statistics.median(ratios):.2f}")


def main() -> None:
    if "--whole-only" in sys.argv:
        print(f"{whole_ms(*common_case()):.4f}")
        return
    if "--compare" in sys.argv:
        compare(sys.argv[sys.argv.index("--compare") + 1])
        return
    settings, signer, pairs, sub = common_case()
    papers = [p for p, _ in pairs]
    ctx = build_context(sub, DAY, pairs, settings, signer)
    env = environment()
    html_t, text_t = env.get_template("digest.html.j2"), env.get_template("digest.txt.j2")
    vars_ = _vars(ctx, ctx.items, SUMMARY_CHARS)
    # The product inlines the CSS once into the template; what inlining each mail would cost:
    on_disk = Environment(loader=template_loader("email"), autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=True)
    raw_html = on_disk.get_template("digest.html.j2").render(vars_)
    rendered = render_digest(ctx)

    def build() -> Any:
        return build_mail(
            rendered, to_addr=sub.email, to_name=sub.name, from_addr=settings.mail_from,
            message_id=message_id(7, DAY, "digest.example"),
            list_headers=ListHeaders(settings.list_id, ctx.unsubscribe_url),
            date=datetime(2026, 8, 18, 6, tzinfo=timezone.utc),
        )

    data = build().data
    rows = [
        ("build_context (25 signed tokens)", median_ms(lambda: build_context(sub, DAY, pairs, settings, signer))),
        ("Jinja render, HTML (CSS inlined once) + text", median_ms(lambda: (html_t.render(_vars(ctx, ctx.items, SUMMARY_CHARS)), text_t.render(vars_)))),
        ("css-inline of the HTML (per mail: not on the send path)", median_ms(lambda: _inliner().inline(raw_html))),
        ("render_digest (subject, HTML, text)", median_ms(lambda: render_digest(ctx))),
        ("build_mail (MIME message + flatten to bytes)", median_ms(build)),
        ("whole pipeline per mail", whole_ms(settings, signer, pairs, sub)),
    ]
    # The richest mail: thumbnails, a quoted sentence beside every interest, stars on the code badge.
    rich_papers = [dataclasses.replace(p, github_stars=1200 + i, organization="A Lab",
                                       thumbnail_url=f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{p.arxiv_id}.png")
                   for i, p in enumerate(papers)]
    sentence = ("We propose a method for efficient long-context reasoning in language models that retrieves "
                "relevant passages and composes them.")
    rich_pairs = [(p, dataclasses.replace(pk, evidence=sentence)) for p, (_, pk) in zip(rich_papers, pairs)]
    rich_sub = dataclasses.replace(sub, thumbnails=True)
    rich = render_digest(build_context(rich_sub, DAY, rich_pairs, settings, signer))
    plain_sub = dataclasses.replace(sub, plain_text=True)
    plain = render_digest(build_context(plain_sub, DAY, pairs, settings, signer))
    rows += [
        ("whole, thumbnails + sentences + stars", whole_ms(settings, signer, rich_pairs, rich_sub)),
        ("whole, plain text only (one text/plain body)", whole_ms(settings, signer, pairs, plain_sub)),
    ]
    print(f"10-paper digest, median of {N} runs, per mail:")
    for label, ms in rows:
        print(f"  {label:<56} {ms:7.3f} ms")
    print(f"  => ~{1000 / rows[5][1]:.0f} mails/s on one core (plain digest)")
    print(f"  sizes: message {len(data) / 1024:.1f} KiB (base64 parts), HTML {len(rendered.html.encode()) / 1024:.1f} KiB, "
          f"text {len(rendered.text.encode()) / 1024:.1f} KiB; with thumbnails and sentences HTML "
          f"{len(rich.html.encode()) / 1024:.1f} KiB; plain text only {len(plain.text.encode()) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
