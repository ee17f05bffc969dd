"""The README's first command, as a subprocess from a clean environment: exits 0 and leaves the mails."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest



@pytest.mark.slow
def test_demo_from_a_clean_environment(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()  # a fresh user: empty home, fresh PREFECT_HOME
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    digest_cmd = Path(sys.executable).parent / "digest"
    result = subprocess.run([str(digest_cmd), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    mails = sorted((tmp_path / "outbox").glob("*.eml"))
    assert {m.name.split("--")[0] for m in mails} == {"ada@example.org", "grace@example.org", "alan@example.org"}
    for m in mails:
        msg = email.message_from_bytes(m.read_bytes(), policy=policy.default)
        assert msg["Subject"].startswith("Daily Papers, 2026-08-18: ")
        assert m.with_suffix(".html").exists()
        assert str(m.with_suffix(".html")) in result.stdout
    assert "sent" in result.stdout and (tmp_path / "digest-demo.db").exists()
