"""The Sui wallet: the Sui CLI's files read and written faithfully, keys never leaked."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
import yaml
from pysui.sui.sui_crypto import keypair_from_keystring

from chain.errors import MalformedKeystore, WalletExists, WalletNotFound
from chain.wallet import Keypair, Wallet

# Made with @mysten/sui 2.33.1: Ed25519Keypair.fromSecretKey(bytes 1..32).toSuiAddress()
SEED = bytes(range(1, 33))
TS_ADDRESS = "0x7573c697fa68450f04fa0dee2d39dcdc8a5ccf5db547f3e47638a6f8eeeec110"
TS_BECH32 = "suiprivkey1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqa4ffsr"
TS_PUBLIC_B64 = "ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ="


def test_address_matches_the_typescript_sdk() -> None:
    key = Keypair.from_ed25519_seed(SEED)
    assert key.address == TS_ADDRESS
    assert key.public_key == base64.b64decode(TS_PUBLIC_B64)
    assert Keypair.from_keystring(TS_BECH32).address == TS_ADDRESS


def test_private_key_never_in_repr() -> None:
    key = Keypair.from_ed25519_seed(SEED)
    secret = base64.b64encode(SEED).decode()
    assert secret not in repr(key)
    assert SEED.hex() not in repr(key)


def test_transaction_signature_matches_pysui() -> None:
    key = Keypair.from_ed25519_seed(SEED)
    tx = b"some transaction bytes"
    ours = key.sign_transaction(tx)
    theirs = keypair_from_keystring(key.keystring()).new_sign_secure(base64.b64encode(tx).decode())
    assert len(ours) == 97 and ours[0] == 0 and ours[65:] == key.public_key
    assert base64.b64encode(ours).decode() == theirs


def test_create_then_load(tmp_path: Path) -> None:
    wallet = Wallet.create(tmp_path / "w", env_alias="devnet", rpc="localhost:9000")
    for name in ("client.yaml", "sui.keystore", "sui.aliases"):
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "w").stat().st_mode) == 0o700
    loaded = Wallet.load(tmp_path / "w" / "client.yaml")
    assert loaded.active.address == wallet.active.address
    assert loaded.active_env == "devnet"
    # the files are the Sui CLI's: a keystore entry is base64(flag || 32-byte key)
    entries = json.loads((tmp_path / "w" / "sui.keystore").read_text())
    assert len(base64.b64decode(entries[0])) == 33
    with pytest.raises(WalletExists, match="refusing to overwrite"):
        Wallet.create(tmp_path / "w", env_alias="devnet", rpc="localhost:9000")


def _write(directory: Path, keystore: object, **cfg: object) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "sui.keystore").write_text(
        keystore if isinstance(keystore, str) else json.dumps(keystore)
    )
    config = {"keystore": {"File": "sui.keystore"}, "envs": [], **cfg}
    (directory / "client.yaml").write_text(yaml.safe_dump(config))
    return directory / "client.yaml"


def test_existing_sui_cli_wallet_with_relative_keystore(tmp_path: Path) -> None:
    key = Keypair.from_ed25519_seed(SEED)
    path = _write(tmp_path, [TS_BECH32], active_address=TS_ADDRESS.upper().replace("0X", "0x"))
    assert Wallet.load(path).active == key


@pytest.mark.parametrize(
    ("keystore", "message"),
    [
        ("not json", "not a JSON array"),
        ({"a": 1}, "JSON array of key strings"),
        (["!!!"], "entry 0: not a Sui private key"),
        ([base64.b64encode(b"\x00" * 10).decode()], "10 bytes, expected 33"),
        ([base64.b64encode(b"\x07" + SEED).decode()], "entry 0"),
        ([], "holds no keys"),
    ],
)
def test_malformed_keystore(tmp_path: Path, keystore: object, message: str) -> None:
    path = _write(tmp_path, keystore)
    with pytest.raises(MalformedKeystore, match=message) as info:
        Wallet.load(path)
    assert base64.b64encode(SEED).decode() not in str(info.value)


def test_malformed_client_yaml(tmp_path: Path) -> None:
    (tmp_path / "client.yaml").write_text("keystore: [unclosed")
    with pytest.raises(MalformedKeystore, match="not valid YAML"):
        Wallet.load(tmp_path / "client.yaml")
    (tmp_path / "client.yaml").write_text("envs: []\n")
    with pytest.raises(MalformedKeystore, match="missing `keystore"):
        Wallet.load(tmp_path / "client.yaml")


def test_active_address_without_key(tmp_path: Path) -> None:
    path = _write(tmp_path, [TS_BECH32], active_address="0x" + "ab" * 32)
    with pytest.raises(MalformedKeystore, match="has no key"):
        Wallet.load(path)


def test_missing_wallet(tmp_path: Path) -> None:
    with pytest.raises(WalletNotFound, match="no Sui wallet"):
        Wallet.load(tmp_path / "client.yaml")
    (tmp_path / "client.yaml").write_text(yaml.safe_dump({"keystore": {"File": "gone"}}))
    with pytest.raises(WalletNotFound, match="does not exist"):
        Wallet.load(tmp_path / "client.yaml")
