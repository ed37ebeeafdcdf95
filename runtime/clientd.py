"""`vpn-runtime up` and `down`: the client runtime.

Rule 1: `up` order: undo leftovers of a crashed run, kill switch on, connect (TLS over a
marked TCP socket), then TUN, routes and resolver, then wait for the first authenticated
datagram from the server.  Any failure before that unwinds every change.
Rule 2: once up, the client keeps the tunnel (reconnecting with backoff, under the kill
switch) until `down` asks it to stop over the control socket; `down` with no client
running (killed, crashed) restores from the state file alone.
Rule 3: `up` without `--foreground` starts the client in the background and returns
when the client says it is ready, or with the client's own error and exit code.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from runtime import ctl, evloop, undo
from runtime.bundle import load_bundle
from runtime.clientloop import Client
from runtime.clientsys import settings_of
from runtime.errors import AlreadyRunning, ConnectFailed, NotRunning, VpnError

log = logging.getLogger("vpn-runtime")
STATE = ctl.RUN_DIR / "client-state.json"
LOG_FILE = ctl.RUN_DIR / "client.log"
READY_TIMEOUT = 45.0


def running() -> bool:
    try:
        ctl.request(ctl.CLIENT_SOCKET, "status", timeout=3)
    except NotRunning:
        return False
    return True


def up(args) -> int:
    bundle_path = Path(args.bundle)
    bundle = load_bundle(bundle_path)
    if running():
        raise AlreadyRunning("vpn-runtime up: a tunnel is already up here")
    settings = settings_of(bundle, args.route, args.no_kill_switch, args.allow_lan, args.transport)
    if args.foreground:
        client = Client(bundle, settings, STATE, getattr(args, "ready_fd", None), verbose=args.verbose)
        return evloop.run(client.run())
    return _background(args)


def _background(args) -> int:
    """Start `up --foreground` detached; relay its readiness or its error."""
    ctl.RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    r, w = os.pipe()
    argv = [sys.executable, "-m", "runtime.cli", *(["-v"] if args.verbose else []), "up", str(Path(args.bundle).resolve()),
            "--foreground", "--ready-fd", str(w), *sum((["--route", c] for c in args.route), [])]
    argv += ["--no-kill-switch"] * args.no_kill_switch + ["--allow-lan"] * args.allow_lan
    argv += ["--transport", args.transport] if args.transport else []
    with open(LOG_FILE, "ab") as logf:
        os.chmod(LOG_FILE, 0o600)
        subprocess.Popen(argv, pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                         start_new_session=True)
    os.close(w)
    return _relay(r)


def _relay(r: int) -> int:
    ready, _, _ = select.select([r], [], [], READY_TIMEOUT)
    data = os.read(r, 4096) if ready else b""
    os.close(r)
    if not ready:
        raise ConnectFailed(f"vpn-runtime up: not ready after {READY_TIMEOUT:.0f} s",
                            f"see {LOG_FILE}; the client keeps trying, `vpn-runtime down` stops it")
    try:
        msg = json.loads(data)
    except ValueError:
        raise ConnectFailed("vpn-runtime up: the client stopped before it was ready", f"see {LOG_FILE}") from None
    if "error" in msg:
        err = VpnError(msg["error"], msg.get("hint", ""))
        err.exit_code = msg.get("code", 1)
        raise err
    print(f"up: {msg['name']} via {msg['server']} ({msg['endpoint']}), tunnel {msg['address']}, "
          f"{msg['transport']}, kill switch {'on' if msg['kill_switch'] else 'off'}")
    return 0


def down(verbose: bool = False) -> int:
    """Stop the client if it runs; restore whatever the state file records either way."""
    try:
        ctl.request(ctl.CLIENT_SOCKET, "down", timeout=15)
        stopped = True
    except NotRunning:
        stopped = False
    echo = (lambda s: print(f"[#] {s}", file=sys.stderr)) if verbose else None
    undo.restore(STATE, echo)
    ctl.CLIENT_SOCKET.unlink(missing_ok=True)
    print("down: tunnel stopped, system restored" if stopped else "down: system restored")
    return 0


def orphaned_state() -> dict | None:
    """A status entry when a kill switch (or other change) is held by no running client."""
    if not STATE.exists():
        return None
    try:
        steps = undo.Journal.load(STATE).steps
    except VpnError:
        return None
    if not steps:
        return None
    held = any(s.kind == "nft_table" for s in steps)
    return {"role": "client", "state": "kill-switch-holding" if held else "changes-held", "pid": None,
            "since": time.ctime(STATE.stat().st_mtime)}
