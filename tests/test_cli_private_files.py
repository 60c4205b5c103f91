"""What walrusfs keeps on disk is its user's alone (no devnet): `files.tighten` takes the
group and other bits off what an older walrusfs or a loose umask left, and the processes the
command line starts inherit the umask it sets first thing. A mount's files, checked as
another user: tests/test_cli_hardening.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from walrusfs import files

ROOT = Path(__file__).resolve().parents[1]


def test_tighten_takes_group_and_other_bits_off(tmp_path: Path) -> None:
    top = tmp_path / "vol"
    (top / "staging" / "sub").mkdir(parents=True)
    (top / "meta.db").write_bytes(b"x")
    (top / "run.sh").write_bytes(b"x")
    (top / "staging" / "sub" / "c1").write_bytes(b"x")
    (top / "link").symlink_to("/etc/passwd")
    for p, mode in [
        (top, 0o755),
        (top / "staging", 0o775),
        (top / "staging" / "sub", 0o777),
        (top / "meta.db", 0o644),
        (top / "run.sh", 0o755),
        (top / "staging" / "sub" / "c1", 0o666),
    ]:
        os.chmod(p, mode)
    files.tighten(top)
    modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in [top, *top.rglob("*")]}
    assert modes.pop("link") == 0o777  # not followed: /etc/passwd untouched
    assert modes == {
        "vol": 0o700,
        "staging": 0o700,
        "sub": 0o700,
        "meta.db": 0o600,
        "run.sh": 0o700,
        "c1": 0o600,
    }
    assert stat.S_IMODE(os.stat("/etc/passwd").st_mode) == 0o644


def test_the_umask_reaches_the_processes_walrusfs_starts(tmp_path: Path) -> None:
    """What the CLI's children create (the mount daemon, its upload worker, the devnet) is
    private too: they inherit the umask `walrusfs` sets first thing."""
    made = tmp_path / "made"
    code = (
        "import subprocess, sys\nfrom walrusfs import cli\ncli.main(['paths'])\n"
        f"subprocess.run(['touch', {str(made)!r}], check=True)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT), WALRUSFS_HOME=str(tmp_path / "home")),
    )
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
