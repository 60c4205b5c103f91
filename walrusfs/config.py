"""Where walrusfs keeps its files.

`WALRUSFS_HOME` puts everything of one instance under one directory (tests, several volumes,
a throwaway try-out); without it the XDG base directories are used, as users of S3QL, rclone
and restic expect:

    WALRUSFS_HOME set      unset (XDG defaults)
    $HOME/config           ${XDG_CONFIG_HOME:-~/.config}/walrusfs      config.toml, wallet
    $HOME/data             ${XDG_DATA_HOME:-~/.local/share}/walrusfs   metadata DB, staging, devnet
    $HOME/cache            ${XDG_CACHE_HOME:-~/.cache}/walrusfs        sliver and blob cache
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "WALRUSFS_HOME"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if env is None else env
        home = env.get(HOME_ENV)
        if home:
            root = Path(home).expanduser().absolute()
            return cls(root / "config", root / "data", root / "cache")
        user_home = Path(env.get("HOME") or Path.home())

        def xdg(var: str, default: str) -> Path:
            value = env.get(var)
            base = Path(value) if value and Path(value).is_absolute() else user_home / default
            return base / "walrusfs"

        return cls(
            xdg("XDG_CONFIG_HOME", ".config"),
            xdg("XDG_DATA_HOME", ".local/share"),
            xdg("XDG_CACHE_HOME", ".cache"),
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "config_dir": str(self.config_dir),
            "config_file": str(self.config_file),
            "data_dir": str(self.data_dir),
            "cache_dir": str(self.cache_dir),
        }
