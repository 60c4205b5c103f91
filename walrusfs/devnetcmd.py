"""`walrusfs devnet ...`: run the embedded local Walrus network, drill faults on it, and fund
other accounts from its wallet (`devnet fund`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from chain.pricing import format_wal
from walrusfs.clihelpers import COIN_UNIT, coin_amount, run_async
from walrusfs.config import Paths
from walrusfs.devnet import faucet
from walrusfs.devnet.launcher import Devnet
from walrusfs.errors import ExitCode, UsageError

#: Shard count of Walrus mainnet and testnet, the devnet's default.
DEFAULT_N_SHARDS = 1000


def _devnet() -> Devnet:
    return Devnet(Paths.from_env().data_dir)


def _duration_ms(text: str) -> int:
    """`90s`, `10m`, `2h`, `1d` or plain seconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    text = text.strip().lower()
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            number, unit = text[: -len(suffix)], units[suffix]
            break
    else:
        number, unit = text, 1000
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use e.g. 30s, 10m, 1h, 1d"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be positive")
    return int(value * unit)


def cmd_devnet_up(args: argparse.Namespace) -> int:
    """Start the local devnet (genesis on first use) and wait until every service answers."""
    devnet = _devnet()
    fresh = not devnet.exists
    asked = (args.nodes, args.n_shards, args.epoch_duration)
    spec = devnet.up(
        4 if args.nodes is None else args.nodes,
        DEFAULT_N_SHARDS if args.n_shards is None else args.n_shards,
        86_400_000 if args.epoch_duration is None else args.epoch_duration,
    )
    have = (spec.n_nodes, spec.n_shards, spec.epoch_duration_ms)
    if not fresh and any(a is not None and a != h for a, h in zip(asked, have, strict=True)):
        print(
            f"walrusfs: note: the existing devnet keeps its genesis settings ({spec.n_nodes} "
            f"nodes, {spec.n_shards} shards, {spec.epoch_duration_ms} ms epochs); "
            "`walrusfs devnet destroy` to start over with new ones",
            file=sys.stderr,
        )
    print(
        f"devnet {'created and ' if fresh else ''}running: {spec.n_nodes} nodes, "
        f"{spec.n_shards} shards, chain on localhost:{spec.sui_port}, "
        f"wallet {spec.wallet_address}"
    )
    return ExitCode.OK


def cmd_devnet_down(args: argparse.Namespace) -> int:
    """Stop every devnet process (data is kept; `up` resumes)."""
    stopped = _devnet().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return ExitCode.OK


def cmd_devnet_destroy(args: argparse.Namespace) -> int:
    """Stop the devnet and delete its chain, nodes and wallet."""
    devnet = _devnet()
    devnet.destroy()
    print(f"removed {devnet.root}")
    return ExitCode.OK


def cmd_devnet_status(args: argparse.Namespace) -> int:
    """Services, pids, ports, epoch, health and disk use of the devnet."""
    status = _devnet().status()
    if args.json:
        print(json.dumps(status, indent=2))
        return ExitCode.OK
    epoch = status["epoch"]
    print(f"devnet  {status['home']}")
    print(f"chain   {status['grpc']}  epoch {epoch if epoch is not None else '?'}")
    print(f"wallet  {status['wallet']}  ({status['walletConfig']})")
    print(f"disk    {status['diskUse']} bytes")
    print(f"{'service':8} {'pid':>7} {'port':>6}  {'state':9} {'shards':>6} {'disk':>12}  faults")
    for svc in status["services"]:
        state = "healthy" if svc["healthy"] else "running" if svc["running"] else "stopped"
        detail = svc["detail"]
        faults = ",".join(f"{k}={v}" for k, v in detail.get("faults", {}).items()) or "-"
        print(
            f"{svc['name']:8} {svc['pid'] or '-':>7} {svc['port']:>6}  {state:9} "
            f"{detail.get('shards', '-'):>6} {detail.get('diskUse', '-'):>12}  {faults}"
        )
    return ExitCode.OK


def cmd_devnet_node(args: argparse.Namespace) -> int:
    """Fault drills on one storage node."""
    devnet = _devnet()
    i = args.index
    if args.action == "stop":
        done = devnet.node_stop(i, kill=args.kill)
        verb = "killed" if args.kill else "stopped"
        print(f"node-{i} {verb}" if done else f"node-{i} was not running")
    elif args.action == "start":
        print(f"node-{i} running, pid {devnet.node_start(i)}")
    elif args.action == "corrupt":
        devnet.set_faults(i, corrupt=True)
        print(f"node-{i} now serves corrupted slivers")
    elif args.action == "slow":
        devnet.set_faults(i, delay_ms=args.ms)
        print(f"node-{i} now answers {args.ms} ms late")
    elif args.action == "refuse":
        devnet.set_faults(i, refuse=True)
        print(f"node-{i} now refuses every request (503)")
    else:
        devnet.set_faults(i)
        print(f"node-{i} healed: no test switches")
    return ExitCode.OK


def cmd_devnet_fund(args: argparse.Namespace) -> int:
    """Send SUI (gas) and WAL (storage) from the devnet's wallet to another address: a second
    account on the same devnet (another machine of a volume, a test's own wallet)."""

    async def go() -> int:
        try:
            result = await faucet.fund(_devnet(), args.address, mist=args.sui, frost=args.wal)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(
            f"sent {args.sui / COIN_UNIT:.9f} SUI and {format_wal(args.wal)} to {args.address} "
            f"(transaction {result.digest})"
        )
        return ExitCode.OK

    return run_async(go)


def cmd_devnet_epoch(args: argparse.Namespace) -> int:
    """Start the next epoch now (`count` times): blobs reach their end epoch sooner."""
    print(f"epoch {_devnet().advance_epoch(args.count)}")
    return ExitCode.OK


def _int_between(least: int, most: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number in least..most (a negative count or delay is a
    usage error, not a drill that misbehaves)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} between {least} and {most}")
        return value

    return convert


def add_parser(sub: Any, n_shards: Callable[[str], int]) -> None:
    """`walrusfs devnet` and its actions; `n_shards` checks a shard count (shared with
    `blob-id`)."""
    devnet = sub.add_parser(
        "devnet",
        help="run a local Walrus network (Sui stand-in + storage nodes on 127.0.0.1)",
        description="A local Walrus network whose state lives under WALRUSFS_HOME.",
    )
    dsub = devnet.add_subparsers(dest="devnet_command", required=True, metavar="ACTION")
    p = dsub.add_parser("up", help=cmd_devnet_up.__doc__, description=cmd_devnet_up.__doc__)
    p.add_argument(
        "--nodes",
        type=_int_between(1, 1000, "a node count"),
        help="storage nodes at genesis (default 4)",
    )
    p.add_argument("--n-shards", type=n_shards, help="shards at genesis (default 1000)")
    p.add_argument(
        "--epoch-duration",
        type=_duration_ms,
        metavar="DURATION",
        help="epoch length at genesis: 30s, 10m, 1h, 1d (default 1d)",
    )
    p.set_defaults(func=cmd_devnet_up)
    p = dsub.add_parser("down", help=cmd_devnet_down.__doc__)
    p.set_defaults(func=cmd_devnet_down)
    p = dsub.add_parser("destroy", help=cmd_devnet_destroy.__doc__)
    p.set_defaults(func=cmd_devnet_destroy)
    p = dsub.add_parser("status", help=cmd_devnet_status.__doc__)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_devnet_status)
    p = dsub.add_parser("node", help=cmd_devnet_node.__doc__, description=cmd_devnet_node.__doc__)
    p.add_argument("action", choices=["stop", "start", "corrupt", "slow", "refuse", "heal"])
    p.add_argument(
        "index", type=_int_between(0, 65535, "a node index"), metavar="I", help="node index"
    )
    p.add_argument("--kill", action="store_true", help="stop: SIGKILL instead of SIGTERM")
    p.add_argument(
        "--ms",
        type=_int_between(0, 600_000, "milliseconds"),
        default=2000,
        help="slow: delay per request in milliseconds (default 2000; 0 is no delay)",
    )
    p.set_defaults(func=cmd_devnet_node)
    p = dsub.add_parser("epoch", help=cmd_devnet_epoch.__doc__)
    p.add_argument("advance", choices=["advance"])
    p.add_argument(
        "count",
        type=_int_between(1, 1000, "a number of epochs"),
        nargs="?",
        default=1,
        help="how many epochs to start (default 1)",
    )
    p.set_defaults(func=cmd_devnet_epoch)
    p = dsub.add_parser("fund", help=cmd_devnet_fund.__doc__, description=cmd_devnet_fund.__doc__)
    p.add_argument("address", metavar="ADDRESS", help="the Sui address to fund (0x...)")
    p.add_argument(
        "--sui",
        type=coin_amount("SUI", zero=False),
        default=50 * COIN_UNIT,
        help="SUI (default 50)",
    )
    p.add_argument(
        "--wal", type=coin_amount("WAL", zero=True), default=50 * COIN_UNIT, help="WAL (default 50)"
    )
    p.set_defaults(func=cmd_devnet_fund)
