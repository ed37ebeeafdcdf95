"""`invoke demo`: the whole story, narrated, on the local lab.

Deploy vps1 (and again: nothing changes), issue alice a bundle, bring the tunnel up on
the laptop and watch the web page's view of the laptop move from the laptop's address to
vps1's, resolve a name through the tunnel, revoke alice (her session is cut), take the
tunnel down (the laptop is as before), tear vps1 down and show its snapshot back as it
was before the first deploy.

Rule: every step is the real command a user would run (deploy and clients through the
toolkit over SSH, `vpn-runtime` on the laptop); the lab's back door (nsenter) is used only
to play the laptop's user and to take snapshots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from provision import clients, deploy as deploy_mod
from provision.connection import connect
from provision.lab import lab, labinventory, snapshot
from provision.lab.hostfiles import install_runtime, put, sh

SERVER, LAPTOP = "vps1", "laptop"


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show(text: str) -> None:
    for line in text.rstrip().splitlines():
        print(f"    {line}")


def run(root: Path, inventory: Path) -> None:
    say("bringing up the lab: an internet router, fresh Debian VPS hosts and laptops")
    state = lab.up(log=lambda *_: None)
    state = lab.reset_host(SERVER, log=lambda *_: None)
    labinventory.write(state, inventory)
    show("\n".join(f"{h['name']:8} {h['address'] or '(router)'}" for h in lab.status(state)["hosts"]))
    before = snapshot.take(SERVER, state)
    story(state, inventory, root)
    say(f"{SERVER}'s snapshot against the one taken before the first deploy")
    diff = snapshot.diff(before, snapshot.take(SERVER, state), SERVER)
    show(diff or f"identical: {SERVER} is back exactly as it was (nft ruleset, sysctls, routes, units, packages, files)")
    if diff:
        raise SystemExit(1)


def story(state, inventory: Path, root: Path) -> None:
    say(f"invoke deploy --host {SERVER}: a fresh host to a running VPN server, over SSH")
    deploy_mod.deploy(inventory, SERVER)
    say(f"invoke deploy --host {SERVER} again: nothing to change")
    deploy_mod.deploy(inventory, SERVER)
    say("invoke add-client alice")
    bundle = clients.add_client(inventory, "alice", force=True)
    show(f"wrote {bundle.relative_to(root)} (mode {oct(bundle.stat().st_mode & 0o777)})")
    laptop_before = tunnel(state, bundle)
    say(f"invoke status --host {SERVER}")
    show("\n".join(clients.render_status(clients.server_status(inventory, SERVER, connect))))
    say("invoke revoke-client alice: CRL pushed to every server, her live session cut")
    results = clients.revoke_client(inventory, "alice", connect)
    show("\n".join(clients.render_pushes(results)))
    time.sleep(2)
    st = sh(state, LAPTOP, "vpn-runtime status --json", check=False).stdout
    show(f"laptop: {json.loads(st).get('state') if st else 'no client'}; the kill switch still blocks the way out")
    laptop_down(state, laptop_before)
    say(f"invoke teardown --host {SERVER}")
    deploy_mod.teardown(inventory, SERVER)


def tunnel(state, bundle: Path) -> str:
    """Bring alice's tunnel up on the laptop; return the laptop's snapshot from before."""
    say("on the laptop: install vpn-runtime and copy the bundle over")
    install_runtime(state, LAPTOP)
    put(state, LAPTOP, "/root/alice.bundle", bundle.read_bytes(), 0o600)
    before = snapshot.take(LAPTOP, state)
    show("the web server sees: " + web(state))
    say("vpn-runtime up alice.bundle")
    show(sh(state, LAPTOP, "vpn-runtime up /root/alice.bundle", timeout=90).stdout)
    show("the web server now sees: " + web(state))
    say("dig web.example.test, answered by vps1's resolver through the tunnel")
    show(sh(state, LAPTOP, "dig +short +time=2 web.example.test", check=False).stdout or "(no answer)")
    show(sh(state, LAPTOP, "grep nameserver /etc/resolv.conf").stdout)
    say("vpn-runtime status on the laptop")
    show(sh(state, LAPTOP, "vpn-runtime status").stdout)
    return before


def web(state) -> str:
    return sh(state, LAPTOP, "curl -s --max-time 5 http://203.0.113.80/", check=False).stdout.strip() or "(nothing)"


def laptop_down(state, before: str) -> None:
    say("vpn-runtime down: the laptop back exactly as before `up`")
    show(sh(state, LAPTOP, "vpn-runtime down").stdout)
    diff = snapshot.diff(before, snapshot.take(LAPTOP, state), LAPTOP)
    show(diff or "laptop snapshot identical to the one before `up` (routes, rules, nft, resolv.conf)")
    show("the web server sees: " + web(state))
