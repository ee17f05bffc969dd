"""The README's first command, as a subprocess from a clean environment: exits 0, leaves the mails, teaches
(who the demo subscribers are, what they asked for, their top picks) and its next steps work as printed."""

from __future__ import annotations

import email
import os
import re
import shlex
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest

from flows.demo import DEMO_SUBSCRIBERS


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
    out = result.stdout
    for address, name, interests in DEMO_SUBSCRIBERS:
        assert f"{name} <{address}> asked for" in out
        for interest in interests:
            assert f'"{interest}"' in out
    assert len(re.findall(r"^    1\. .+\((interest: .+|trending)\)$", out, re.M)) == 3, "each one's top pick, and why"
    assert "Next steps" in out and "digest web" in out

    # Step 3 as printed: add yourself, run the day again, find your own digest in the outbox.
    exported = re.search(r"^\s+export (.+)$", out, re.M)
    add = re.search(r"^\s+(digest subscribers add .+)$", out, re.M)
    run = re.search(r"^\s+(digest run .+)$", out, re.M)
    assert exported and add and run, out
    step_env = {**env, **dict(kv.split("=", 1) for kv in shlex.split(exported.group(1)))}
    for command in (add.group(1), run.group(1)):
        argv = shlex.split(command)
        done = subprocess.run([str(digest_cmd), *argv[1:]], cwd=tmp_path, env=step_env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    yours = [m for m in (tmp_path / "outbox").glob("*.eml")
             if email.message_from_bytes(m.read_bytes(), policy=policy.default)["To"] == "you@example.org"]
    assert len(yours) == 1, sorted(p.name for p in (tmp_path / "outbox").iterdir())
