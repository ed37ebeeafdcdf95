"""`invoke demo`: the whole story, narrated, on the local lab.

Until deploy and the runtime exist it brings the lab up and shows it: the hosts, what
the internet's web server sees of the laptop, and a name resolved by the lab's resolver.
"""

from __future__ import annotations

from pathlib import Path

from provision.lab import lab, labinventory, local


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def on(host: str, state: lab.LabState, cmd: str) -> str:
    return local.out([*lab.exec_argv(host, state), "sh", "-c", cmd], timeout=60).strip()


def run(root: Path, inventory: Path) -> None:
    say("bringing up the lab: an internet router, two fresh Debian VPS hosts and two laptops")
    state = lab.up()
    labinventory.write(state, inventory)
    for h in lab.status(state)["hosts"]:
        print(f"    {h['name']:8} {h['address'] or '(router)':15} netns {h['netns']}")
    say("the laptop asks the internet's web server which address it sees")
    print("    " + on("laptop", state, "curl -s http://203.0.113.80/"))
    say("the laptop resolves web.example.test through the internet's public resolver")
    print("    " + on("laptop", state, "dig +short web.example.test @203.0.113.53"))
    say("the operator reaches vps2 over SSH as `admin` on port 2222, with sudo")
    print("    " + local.out([*lab.ssh_argv("vps2", state), "hostname; id -un"], timeout=60).replace("\n", " "))
    say(f"inventory written to {inventory.relative_to(root)}; `invoke lab.down` removes the lab")
