"""What the command line takes in is checked before anything runs (no devnet): configuration
and command-line values that would break the mount are refused with exit 2, IDs starting with
'-' parse as IDs, the fstab helper takes mount(8)'s generic options and writes its errors to
stderr alone, and secrets (passphrase files, standard input) are read with a bound on size
and time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.devnet_harness import walrusfs
from walrusfs import cli, files, fstab, settings
from walrusfs.config import Paths
from walrusfs.errors import InputError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def _home(tmp_path: Path, config: str | None = None) -> Path:
    if config is not None:
        conf = tmp_path / "config" / "config.toml"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(config)
    return tmp_path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("epochs = 1000000", "between 1 and 53"),
        ("epochs = 54", "between 1 and 53"),
        ("epochs = 0", "between 1 and 53"),
        ("upload_delay = nan", "a finite number of seconds"),
        ("upload_delay = inf", "a finite number of seconds"),
        ("upload_delay = -1", "a finite number of seconds"),
        ("checkpoint_interval = nan", "a finite number of seconds"),
        ("checkpoint_interval = 1", "at least 60 seconds"),
        ("staging_limit = 0", "at least 4M"),
        ("staging_limit = '1M'", "at least 4M"),
        ("cache_size = 0", "at least 16M"),
        ("memory = '100M'", "at least 256M"),
        ("memory = '1e30T'", "at most 1P"),
        ("compact_below = nan", "a fraction between 0 and 1"),
        ('volume = "a\\u0000b"', "a volume name of at most 64"),
        ('volume = "a,b"', "a volume name of at most 64"),
        ('volume = "-x"', "a volume name of at most 64"),
        ('volume = "mé"', "a volume name of at most 64"),
        ('mountpoint = "/mnt/a\\u0000b"', "without NUL"),
    ],
)
def test_config_values_that_would_break_the_mount_are_refused(
    tmp_path: Path, line: str, message: str
) -> None:
    home = _home(tmp_path, f"[mount]\n{line}\n")
    with pytest.raises(UsageError) as err:
        settings.load(Paths.from_env({"WALRUSFS_HOME": str(home)}))
    assert message in str(err.value), str(err.value)
    r = walrusfs(home, "config", check=False, timeout=60)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_config_values_at_their_limits_are_accepted(tmp_path: Path) -> None:
    home = _home(
        tmp_path,
        "[mount]\nepochs = 53\nupload_delay = 0.1\ncheckpoint_interval = 60\n"
        'staging_limit = "4M"\ncache_size = "16M"\nmemory = "256M"\nvolume = "My.vol_2-b"\n',
    )
    m = settings.load(Paths.from_env({"WALRUSFS_HOME": str(home)})).mount
    assert (m.epochs, m.staging_limit, m.memory, m.volume) == (53, 4 << 20, 256 << 20, "My.vol_2-b")


@pytest.mark.parametrize(
    "args",
    [
        ["mount", "MNT", "--epochs", "54"],
        ["mount", "MNT", "--epochs", "-1"],
        ["mount", "MNT", "--upload-delay", "nan"],
        ["mount", "MNT", "--upload-delay", "inf"],
        ["mount", "MNT", "--checkpoint-interval", "1"],
        ["mount", "MNT", "--staging-limit", "0"],
        ["mount", "MNT", "--cache-size", "-5"],
        ["mount", "MNT", "--memory", "nan"],
        ["mount", "MNT", "--renew-epochs", "100"],
        ["mount", "MNT", "--renew-horizon", "0"],
        ["mount", "MNT", "--compact-below", "nan"],
        ["mount", "MNT", "--volume", "a,b"],
        ["mount", "MNT", "--volume", "../x"],
        ["fsck", "--epochs", "1000000"],
        ["fsck", "--volume", "a b"],
        ["blob", "store", "FILE", "--epochs", "54"],
        ["blob", "store-quilt", "MNT", "--epochs", "0"],
        ["blob", "extend", "0x1", "--epochs", "-3"],
        ["devnet", "node", "slow", "0", "--ms", "-5"],
        ["devnet", "epoch", "advance", "-3"],
        ["devnet", "epoch", "advance", "0"],
        ["devnet", "up", "--nodes", "0"],
        ["wallet", "get-wal", "1e30"],
    ],
)
def test_command_line_values_out_of_range_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "mnt").mkdir()
    (tmp_path / "file").write_bytes(b"x")
    args = [
        str(tmp_path / "mnt") if a == "MNT" else str(tmp_path / "file") if a == "FILE" else a
        for a in args
    ]
    r = walrusfs(tmp_path / "home", *args, check=False, timeout=60)
    assert r.returncode == 2, (args, r.stderr)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "data" / "devnet").exists()  # refused before anything ran


def _parse(*argv: str) -> dict[str, object]:
    return vars(cli.build_parser().parse_args(list(argv)))


def test_every_id_taking_command_accepts_an_id_starting_with_a_dash() -> None:
    blob_id = "-cOIaze1USlAhe5F1PeNEi1527x26WplcZgfa4mhDBE"
    patch_id = "-cOIaze1USlAhe5F1PeNEi1527x26WplcZgfa4mhDBEBAQAAAA"
    assert len(blob_id) == 43 and len(patch_id) == 50
    got = _parse("blob", "read", blob_id, "-o", "out", "--range", "0-5")
    assert (got["blob_id"], got["output"], got["range"]) == (blob_id, "out", "0-5")
    assert _parse("blob", "read", "-o", "out", blob_id)["blob_id"] == blob_id
    assert _parse("blob", "read", "--", blob_id)["blob_id"] == blob_id
    assert _parse("blob", "read-patch", patch_id, "-o", "x")["patch_id"] == patch_id
    assert _parse("blob", "read-patch", "--", patch_id)["patch_id"] == patch_id
    assert _parse("blob", "extend", blob_id, "--epochs", "2")["object_id"] == blob_id
    assert _parse("blob", "extend", "--epochs", "2", "--", blob_id)["object_id"] == blob_id
    assert _parse("blob", "delete", blob_id)["object_id"] == blob_id
    assert _parse("blob", "delete", "--", blob_id)["object_id"] == blob_id
    # options are still options, and an unknown one is still refused
    assert _parse("blob", "read", "A" * 43, "--no-cache")["no_cache"] is True
    with pytest.raises(SystemExit):
        _parse("blob", "read", "A" * 43, "--colour")


def test_secrets_are_read_with_a_bound(tmp_path: Path) -> None:
    ok = tmp_path / "pass"
    ok.write_bytes(b"correct horse\n")
    assert files.read_secret(str(ok)) == b"correct horse\n"
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for bad, message in [
        ("/dev/zero", "not a regular file"),
        (str(fifo), "not a regular file"),  # opened non-blocking: no writer needed to refuse
        (str(tmp_path), "a directory"),
        (str(big), "at most 4096 bytes"),
        (str(tmp_path / "missing"), "no such file"),
    ]:
        with pytest.raises(InputError, match=message):
            files.read_secret(bad)


def _secret_from_stdin(name: str, stdin: int | None, timeout: float) -> subprocess.Popen[str]:
    code = (
        "import sys\nfrom walrusfs.files import read_secret\nfrom walrusfs.errors import "
        "InputError\ntry:\n    print(read_secret(sys.argv[1], timeout=float(sys.argv[2])))\n"
        "except InputError as exc:\n    print('refused:', exc)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, name, str(timeout)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_a_pipe_on_stdin_is_read_with_a_timeout() -> None:
    for name in ("-", "/dev/stdin"):
        read_fd, write_fd = os.pipe()
        proc = _secret_from_stdin(name, read_fd, 30)
        os.close(read_fd)
        os.write(write_fd, b"from a pipe\n")
        os.close(write_fd)
        out, _ = proc.communicate(timeout=30)
        assert out.strip() == "b'from a pipe\\n'", out
    read_fd, write_fd = os.pipe()  # a writer that never writes nor closes
    started = time.monotonic()
    proc = _secret_from_stdin("-", read_fd, 0.5)
    os.close(read_fd)
    out, _ = proc.communicate(timeout=30)
    os.close(write_fd)
    assert "refused:" in out and "nothing arrived" in out, out
    assert time.monotonic() - started < 20


@pytest.mark.timeout(120)
def test_passphrase_files_that_are_not_files_are_exit_3(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for bad in ("/dev/zero", str(fifo), str(tmp_path)):
        for command in (
            ["mount", str(tmp_path), "--passphrase-file", bad],
            ["fsck", "--passphrase-file", bad],
        ):
            r = walrusfs(tmp_path / "home", *command, check=False, timeout=60)
            assert r.returncode == 3 and "passphrase file" in r.stderr, (command, r.stderr)
    # a passphrase on standard input is read (fsck then finds no volume: exit 2, not 3)
    r = subprocess.run(
        [sys.executable, "-m", "walrusfs.cli", "fsck", "--passphrase-file", "-"],
        input="piped\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dict(os.environ, WALRUSFS_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT)),
    )
    assert r.returncode == 2 and "has no database" in r.stderr, r.stderr


def test_fstab_helper_takes_the_generic_mount_options() -> None:
    generic = (
        "defaults,_netdev,nofail,user,users,atime,noatime,relatime,strictatime,nodiratime,"
        "lazytime,suid,nosuid,dev,nodev,exec,noexec,rw"
    )
    args, _ = fstab.translate(["vol", "/mnt/w", "-o", generic])
    assert args == ["mount", "/mnt/w", "--volume", "vol"]
    args, _ = fstab.translate(["vol", "/mnt/w", "-o", "ro,noatime"])
    assert args == ["mount", "/mnt/w", "--volume", "vol", "--read-only"]
    args, _ = fstab.translate(["vol", "/mnt/w", "-o", "ro", "-o", "rw"])  # the last one wins
    assert "--read-only" not in args
    assert _parse(*args[:2], "--read-only")["read_only"] is True
    with pytest.raises(fstab.HelperError, match="remount is not supported"):
        fstab.translate(["vol", "/mnt/w", "-o", "remount,ro"])
    with pytest.raises(fstab.HelperError, match="unknown mount option 'colour=blue'"):
        fstab.translate(["vol", "/mnt/w", "-o", "colour=blue"])


def test_fstab_helper_errors_go_to_stderr_only(tmp_path: Path) -> None:
    def helper(options: str) -> subprocess.CompletedProcess[str]:
        argv = ["vol", str(tmp_path / "missing"), "-o", f"home={tmp_path / 'home'}{options}"]
        return subprocess.run(
            [sys.executable, "-m", "walrusfs.fstab", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )

    r = helper(",remount")
    assert r.returncode == 2 and r.stdout == "" and "remount is not supported" in r.stderr
    r = helper("")
    assert r.returncode == 2 and r.stdout == "" and "does not exist" in r.stderr
