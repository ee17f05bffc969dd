"""A non-editable build ships templates, migrations and the bundled listing inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .builders import ROOT


@pytest.mark.slow
def test_wheel_contains_templates_migrations_and_snapshot(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("papers_digest-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.relative_to(ROOT / "templates").as_posix() for p in (ROOT / "templates").rglob("*")
                 if p.suffix in (".j2", ".md")}
    assert {"email/digest.html.j2", "email/confirm.txt.j2", "pages/subscribe.html.j2"} <= templates
    assert {f"digest/templates/{t}" for t in templates} <= names
    assert {"digest/mail/transports.py", "flows/demo.py"} <= names
    assert "digest/store/migrations/env.py" in names
    assert "digest/store/migrations/versions/0001_papers_subscribers.py" in names
    assert "digest/data/listing_2026-08-18.json" in names
    assert "flows/__init__.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "digest = digest.cli:app" in zipfile.ZipFile(wheel).read(entry).decode()
