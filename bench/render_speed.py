"""Per-mail cost of a 10-paper digest: signed links, Jinja render, css-inline, MIME build, flatten.

Run: .venv/bin/python bench/render_speed.py   (prints medians; nothing is asserted)
"""

from __future__ import annotations

import statistics
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


def main() -> None:
    settings = Settings(_env_file=None, public_url="https://digest.example")  # type: ignore[call-arg]
    signer = LinkSigner("bench-secret", settings.public_url)
    papers = [
        Paper(arxiv_id=f"2408.{i:05d}", title=f"Efficient long-context reasoning — part {i}", abstract=ABSTRACT,
              authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"), listing_date=DAY,
              upvotes=50 - i, github_url=f"https://github.com/ex/r{i}", project_url=f"https://ex.org/{i}")
        for i in range(10)
    ]
    pairs = [(p, Pick(p.arxiv_id, i + 1, 0.9 - i / 100, "interest: LLM reasoning")) for i, p in enumerate(papers)]
    sub = Subscriber(email="ada@example.org", name="Ada", id=7, link_key="bench-link-key")
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

    def whole() -> bytes:
        c = build_context(sub, DAY, pairs, settings, signer)
        r = render_digest(c)
        return build_mail(
            r, to_addr=sub.email, to_name=sub.name, from_addr=settings.mail_from,
            message_id=message_id(7, DAY, "digest.example"),
            list_headers=ListHeaders(settings.list_id, c.unsubscribe_url),
        ).data

    rows = [
        ("build_context (25 signed tokens)", median_ms(lambda: build_context(sub, DAY, pairs, settings, signer))),
        ("Jinja render, HTML (CSS inlined once) + text", median_ms(lambda: (html_t.render(_vars(ctx, ctx.items, SUMMARY_CHARS)), text_t.render(vars_)))),
        ("css-inline of the HTML (per mail: not on the send path)", median_ms(lambda: _inliner().inline(raw_html))),
        ("render_digest (subject, HTML, text)", median_ms(lambda: render_digest(ctx))),
        ("build_mail (MIME message + flatten to bytes)", median_ms(build)),
        ("whole pipeline per mail", median_ms(whole)),
    ]
    print(f"10-paper digest, median of {N} runs, per mail:")
    for label, ms in rows:
        print(f"  {label:<56} {ms:7.3f} ms")
    print(f"  => ~{1000 / rows[-1][1]:.0f} mails/s on one core")
    print(f"  sizes: message {len(data) / 1024:.1f} KiB (base64 parts), HTML {len(rendered.html.encode()) / 1024:.1f} KiB, "
          f"text {len(rendered.text.encode()) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
