"""The configuration file and the choice of network (walrusfs/settings.py), as a user meets
them: every bad line is one message naming the key and exit 2; the network comes from
--network, then $WALRUSFS_NETWORK, then the file; a missing wallet is exit 9 and an
unreachable chain exit 5, each with what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chain.client import TESTNET
from chain.wallet import Wallet
from tests.devnet_harness import walrusfs
from walrusfs import fstab, settings
from walrusfs.config import Paths
from walrusfs.errors import UsageError


def _paths(tmp_path: Path, text: str | None) -> Paths:
    paths = Paths.from_env({"WALRUSFS_HOME": str(tmp_path)})
    if text is not None:
        paths.config_dir.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text(text)
    return paths


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return walrusfs(home, *args, check=False, timeout=60, **env)


def test_no_file_means_the_devnet_and_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WALRUSFS_NETWORK", raising=False)
    s = settings.load(_paths(tmp_path, None))
    assert s.is_devnet and s.file is None and s.network_source == "default"
    assert s.mount == settings.MountDefaults()
    assert s.mount.epochs == 10 and s.mount.cache_size == 16 << 30


def test_values_are_parsed_and_networks_override_or_define(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WALRUSFS_NETWORK", raising=False)
    paths = _paths(
        tmp_path,
        """
network = "mine"
wallet = "~/wallets/client.yaml"
[mount]
epochs = 20
cache_size = "512M"
staging_limit = 1073741824
upload_delay = 1
compact_below = 0
allow_other = true
[networks.testnet]
system_object = "0x1234"
[networks.mine]
grpc_url = "sui.example.org:443"
system_object = "0xaa"
staking_object = "0xbb"
wal_type = "0xcc::wal::WAL"
""",
    )
    s = settings.load(paths)
    assert s.network == "mine" and s.network_source == str(paths.config_file)
    assert s.wallet_path() == Path("~/wallets/client.yaml").expanduser()
    m = s.mount
    assert (m.epochs, m.cache_size, m.staging_limit) == (20, 512 << 20, 1 << 30)
    assert m.upload_delay == 1.0
    assert m.compact_below == 0.0 and m.allow_other is True and m.memory == 2 << 30
    mine = s.profile()
    assert (mine.grpc_url, mine.tls, mine.system_object) == ("sui.example.org:443", True, "0xaa")
    assert mine.exchange_objects == ()
    testnet = s.networks["testnet"]  # one field overridden, the rest the built-in profile
    assert testnet.system_object == "0x1234" and testnet.wal_type == TESTNET.wal_type
    # precedence: --network over $WALRUSFS_NETWORK over the file; $WALRUSFS_WALLET too
    monkeypatch.setenv("WALRUSFS_WALLET", "/elsewhere/client.yaml")
    assert settings.load(paths).wallet_path() == Path("/elsewhere/client.yaml")
    monkeypatch.setenv("WALRUSFS_NETWORK", "testnet")
    assert settings.load(paths).network == "testnet"
    assert settings.load(paths, network="mainnet").network_source == "--network"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mount]\nepoch = 5\n", "unknown key `mount.epoch`; did you mean `epochs`?"),
        ("netwrok = 'testnet'\n", "unknown key `netwrok`; did you mean `network`?"),
        ("[mount]\nepochs = '5'\n", "`mount.epochs = '5'`: expected a whole number of epochs"),
        ("[mount]\ncache_size = 'lots'\n", 'expected a size such as "512M" or "2G"'),
        ("[mount]\ncompact_below = 2\n", "expected a fraction between 0 and 1"),
        ("[mount]\nvolume = '../x'\n", "expected a volume name of at most 64 letters"),
        ("network = 'testnet\n", "not valid TOML"),
        ("mount = 3\n", "`mount` must be a table"),
        ("[networks.x]\ngrpc_url = 'h:1'\n", "[networks.x] is a new network and needs"),
        ("[networks.x]\ngrpc_url = 'https://h'\n", "host:port of a Sui full node"),
        ("[networks.testnet]\nsystem_object = 'zz'\n", "expected an object ID"),
        ("[networks.devnet]\ntls = false\n", "the embedded devnet is configured by"),
        ("network = 'moon'\n", "unknown network 'moon'"),
    ],
)
def test_a_bad_line_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    paths = _paths(tmp_path, text)
    with pytest.raises(UsageError) as err:
        settings.load(paths)
    assert message in str(err.value)
    assert str(err.value).startswith(str(paths.config_file)) or "unknown network" in message


def test_cli_exit_codes_for_config_network_and_wallet(tmp_path: Path) -> None:
    conf = _paths(tmp_path, "[mount]\nepoch = 5\n").config_file
    r = _cli(tmp_path, "config")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "unknown key `mount.epoch`; did you mean `epochs`?" in r.stderr
    r = _cli(tmp_path, "blob", "list")  # every command that reads the settings refuses
    assert r.returncode == 2 and "mount.epoch" in r.stderr

    conf.write_text('network = "testnet"\n')
    # an unreadable or empty passphrase file: exit 3 before anything starts
    empty = tmp_path / "empty-passphrase"
    empty.write_text("\n")
    bad_files: list[list[str]] = [
        ["mount", str(tmp_path), "--passphrase-file", str(tmp_path / "missing")],
        ["fsck", "--passphrase-file", str(empty)],
    ]
    for command in bad_files:
        r = _cli(tmp_path, *command)
        assert r.returncode == 3 and "passphrase" in r.stderr, (command, r.stderr)
    r = _cli(tmp_path, "--network", "moon", "wallet")
    assert r.returncode == 2 and "unknown network 'moon' (from --network)" in r.stderr
    # testnet without a wallet: exit 9, naming the path looked at and how to name another
    nowhere = tmp_path / "no-wallet" / "client.yaml"
    r = _cli(tmp_path, "wallet", WALRUSFS_WALLET=str(nowhere))
    assert r.returncode == 9, r.stderr
    assert f"no Sui wallet at {nowhere}" in r.stderr and "wallet = " in r.stderr

    # a wallet, but the chain cannot be reached (no such host): exit 5 with the endpoint
    Wallet.create(tmp_path / "w", env_alias="x", rpc="https://unreachable.invalid:443")
    conf.write_text(
        f'network = "offline"\nwallet = "{tmp_path / "w" / "client.yaml"}"\n'
        '[networks.offline]\ngrpc_url = "unreachable.invalid:443"\nsystem_object = "0x1"\n'
        'staking_object = "0x2"\nwal_type = "0x3::wal::WAL"\n'
    )
    (tmp_path / "mnt").mkdir()
    commands: list[list[str]] = [["wallet"], ["blob", "list"], ["mount", str(tmp_path / "mnt")]]
    for command in commands:
        r = _cli(tmp_path, *command)
        assert r.returncode == 5, (command, r.stderr)
        assert "cannot reach the Sui endpoint unreachable.invalid:443" in r.stderr
        assert "walrusfs devnet" not in r.stderr  # no devnet advice off the devnet
    assert not (tmp_path / "data" / "devnet").exists()  # nothing started a devnet

    shown = _cli(tmp_path, "config", "--json")
    assert shown.returncode == 0 and '"grpc_url": "unreachable.invalid:443"' in shown.stdout


def test_fstab_options_choose_home_and_network() -> None:
    args, env = fstab.translate(["vol", "/mnt/w", "-o", "_netdev,home=/srv/wfs,network=testnet"])
    assert args == ["mount", "/mnt/w", "--volume", "vol"]
    assert env == {"WALRUSFS_HOME": "/srv/wfs", "WALRUSFS_NETWORK": "testnet"}
    with pytest.raises(fstab.HelperError, match="option network needs a value"):
        fstab.translate(["vol", "/mnt/w", "-o", "network="])
