"""Embedding under hostile input: a huge abstract is cut before tokenising (memory stays bounded, measured in
a subprocess), and a model that is not installed is one line saying what to set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.embed import MAX_TEXT_CHARS, paper_text
from digest.sources import huggingface as hf

from .builders import API_2025_06_05, HfScript, items_for

runner = CliRunner()
DAY = date(2025, 6, 5)
HUGE_ABSTRACT_MB = 50


def test_paper_text_is_cut_before_tokenising() -> None:
    assert paper_text("Title", "An abstract.") == "Title. An abstract."
    long = paper_text("Title", "word " * 1_000_000)
    assert len(long) == MAX_TEXT_CHARS and long.startswith("Title. word word")


@pytest.mark.slow
def test_missing_model_is_one_line(db_url: str) -> None:
    env = {"DIGEST_DATABASE_URL": db_url, "DIGEST_MODEL_NAME": "intfloat/e5-small-v2", "HF_HUB_OFFLINE": "1"}
    assert runner.invoke(app, ["fetch", "--from-file", str(API_2025_06_05)], env=env).exit_code == 0
    result = runner.invoke(app, ["rank", "--date", DAY.isoformat()], env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert "intfloat/e5-small-v2" in result.output and "DIGEST_MODEL_NAME" in result.output


MEASURE = textwrap.dedent("""
    import json, resource, sys
    from datetime import date
    from digest import pipeline
    from digest.config import Settings
    from digest.models import Paper
    from digest.store import session_factory
    from digest.store.papers import papers_by_ids, upsert_papers

    db, base, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = Settings(_env_file=None, database_url=db, hf_base_url=base, http_max_attempts=1)
    listing = pipeline.fetch(s, date(2025, 6, 5))  # over HTTP: one item has a huge abstract
    engine = pipeline.open_store(s)
    pipeline.store(engine, listing)
    # And one stored before there were bounds on the way in: only the embedder's cut protects it.
    old = Paper("2506.99999", "Old huge paper", "words " * (mb * 1024 * 1024 // 6), ("A",), date(2025, 6, 5))
    with session_factory(engine).begin() as session:
        upsert_papers(session, [old])
    embedded = pipeline.embed(engine, s).papers  # and the sentences: only the first SPLIT_CHARS are split
    with session_factory(engine)() as session:
        lengths = {k: len(p.abstract) for k, p in papers_by_ids(session, [listing.papers[0].arxiv_id]).items()}
    print(json.dumps({"embedded": embedded, "stored_abstract_chars": lengths,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


@pytest.mark.slow
def test_huge_abstract_keeps_memory_bounded(hf_server: HfScript, db_url: str, tmp_path: Path) -> None:
    items = json.loads(items_for(DAY, json.loads(API_2025_06_05.read_text())[:5]))
    items[0]["paper"]["summary"] = "tokens " * (HUGE_ABSTRACT_MB * 1024 * 1024 // 7)
    body = json.dumps(items).encode()
    assert len(body) > HUGE_ABSTRACT_MB * 1_000_000
    hf_server.answers["/api/daily_papers"] = [(200, {}, body)]
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script), db_url, hf_server.base, str(HUGE_ABSTRACT_MB)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{HUGE_ABSTRACT_MB} MB abstract over HTTP + {HUGE_ABSTRACT_MB} MB stored abstract: {figures}")
    assert figures["embedded"] == 6
    assert all(n <= hf.MAX_ABSTRACT_CHARS for n in figures["stored_abstract_chars"].values())
    # Without the bounds the embedding alone took ~310 MB per MB of abstract (50 MB: 13.5 GB).
    assert figures["peak_rss_mb"] < 2500, figures
