"""Every mount default is written once (walrusfs/fs/defaults.py): the options, the config
file's `[mount]` table, `--help` and the table in docs/configuration.md all say the same."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from walrusfs import settings
from walrusfs.cli import build_parser
from walrusfs.fs.defaults import DEFAULTS, MountDefaults, size_text
from walrusfs.fs.lifetime import RenewPolicy
from walrusfs.fs.options import MountOptions, UploadConfig

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SIZES = {"cache_size", "staging_limit", "memory"}


def _toml(name: str, value: object) -> str:
    """A default as config.toml would spell it (the docs table's `default` column)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in SIZES:
        assert isinstance(value, int)
        return f'"{size_text(value)}"'
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def test_the_docs_table_shows_the_defaults() -> None:
    rows = dict(
        re.findall(r"^\| `\[mount\] (\w+)` \| [^|]+ \| `([^`]+)` \|", DOCS.read_text(), re.M)
    )
    table = {f.name for f in dataclasses.fields(settings.MountDefaults)} - {"mountpoint"}
    assert table <= set(rows), f"not in {DOCS.name}: {sorted(table - set(rows))}"
    for name in table:
        assert rows[name] == _toml(name, getattr(DEFAULTS, name)), name


def test_config_options_and_policies_start_from_the_defaults() -> None:
    conf = settings.MountDefaults()
    for f in dataclasses.fields(MountDefaults):
        if hasattr(conf, f.name):
            assert getattr(conf, f.name) == getattr(DEFAULTS, f.name), f.name
    upload = UploadConfig()
    assert (upload.epochs, upload.delay, upload.compact_below) == (
        DEFAULTS.epochs,
        DEFAULTS.upload_delay,
        DEFAULTS.compact_below,
    )
    options = MountOptions(Path("/m"), Path("/v"), Path("/c"))
    assert (options.cache_bytes, options.memory_bytes, options.staging_limit) == (
        DEFAULTS.cache_size,
        DEFAULTS.memory,
        DEFAULTS.staging_limit,
    )
    assert (options.checkpoint_interval, options.read_timeout) == (
        DEFAULTS.checkpoint_interval,
        DEFAULTS.read_timeout,
    )
    policy = RenewPolicy()
    assert (policy.enabled, policy.horizon, policy.epochs) == (
        DEFAULTS.renew,
        DEFAULTS.renew_horizon,
        DEFAULTS.epochs,
    )


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_names_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    mount = _help(capsys, "mount")
    assert f"per blob (default {DEFAULTS.epochs})" in mount
    assert f"(default {size_text(DEFAULTS.cache_size)})" in mount
    assert f"(default {size_text(DEFAULTS.memory)})" in mount
    assert f"(default {DEFAULTS.epochs})" in _help(capsys, "cost")
    assert f"(default {DEFAULTS.epochs})" in _help(capsys, "fsck")
