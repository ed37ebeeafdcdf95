"""`vpn-runtime`: serve (server daemon), up / down (client), status (either side).

Rule: errors of the user's making (`VpnError`) are caught here, once, and printed as one
line with a hint, leaving with the error's own exit code.  Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import NoReturn

from runtime import __version__
from runtime.errors import PermissionDenied, UsageError, VpnError


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, "see `vpn-runtime --help`")


def parser() -> Parser:
    p = Parser(prog="vpn-runtime", description="The selfvpn tunnel runtime: server daemon and client.")
    p.add_argument("--version", action="version", version=f"vpn-runtime {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="echo every system change ([#] ...)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    s = sub.add_parser("serve", help="run the server daemon in the foreground (what systemd runs)")
    s.add_argument("config", help="server config file (YAML)")
    u = sub.add_parser("up", help="bring the tunnel up from a bundle; returns once it carries traffic")
    u.add_argument("bundle", help="client bundle file")
    u.add_argument("--foreground", action="store_true", help="stay attached instead of going to the background")
    u.add_argument("--route", action="append", default=[], metavar="CIDR", help="split tunnel: route only CIDR (repeatable)")
    u.add_argument("--no-kill-switch", action="store_true", help="do not block traffic outside the tunnel")
    u.add_argument("--allow-lan", action="store_true", help="let the kill switch allow the local networks")
    u.add_argument("--transport", choices=("udp", "tcp"), help="override the bundle's transport")
    u.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    sub.add_parser("down", help="take the tunnel down and restore the system exactly")
    st = sub.add_parser("status", help="peers, addresses, bytes, handshake and key age")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("reload", help="server: re-read the CRL now (as SIGHUP does)")
    c = sub.add_parser("csr", help="make a private key here (kept if it exists) and print its certificate request")
    c.add_argument("--key", required=True, help="key file (created with mode 0600)")
    c.add_argument("--name", required=True, help="the name to request (server name or client name)")
    return p


def main(argv: list[str] | None = None) -> None:
    try:
        args = parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING, format="vpn-runtime: %(message)s", stream=sys.stderr)
        logging.getLogger("vpn-runtime").setLevel(logging.DEBUG if args.verbose else logging.INFO)
        code = dispatch(args)
    except VpnError as e:
        print(f"vpn-runtime: error: {e.line()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "csr":
        from runtime import keygen
        return keygen.main(args.key, args.name)
    if os.geteuid() != 0:
        raise PermissionDenied(f"vpn-runtime {args.command}: needs root (TUN, routes, nftables, control socket)")
    if args.command == "serve":
        from runtime import serverd
        return serverd.main(args.config, verbose=args.verbose)
    if args.command == "up":
        from runtime import clientd
        return clientd.up(args)
    if args.command == "down":
        from runtime import clientd
        return clientd.down(verbose=args.verbose)
    if args.command == "reload":
        from runtime import ctl
        from runtime.config import Paths
        print(json.dumps(ctl.request(Paths().control_socket, "reload")))
        return 0
    from runtime import statusview
    return statusview.show(as_json=args.json)


if __name__ == "__main__":
    main()
