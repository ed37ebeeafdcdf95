"""The operator's commands: `invoke --list` shows them all.

Rule: every task catches the toolkit's errors once, here, and leaves with one line (what,
where, what to do) and the error's own exit code; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from provision.errors import ProvisionError

ROOT = Path(__file__).resolve().parent
LAB_INVENTORY = ROOT / "inventory" / "lab.yml"


def guarded(fn):
    """Turn a ProvisionError into invoke's Exit: one line, a distinct exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ProvisionError as e:
            raise Exit(f"error: {e.line()}", code=e.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


# --- the lab -------------------------------------------------------------------------

@task
@guarded
def lab_image(c):
    """Build (or reuse) the cached Debian 12 image of lab hosts."""
    from provision.lab import image

    print(image.ensure_image())


@task(help={"quiet": "print nothing but errors"})
@guarded
def lab_up(c, quiet=False):
    """Bring the lab up: internet router, vps1, vps2, laptop, laptop2; write inventory/lab.yml."""
    from provision.lab import lab, labinventory

    state = lab.up(log=(lambda *_: None) if quiet else print)
    labinventory.write(state, LAB_INVENTORY)
    if not quiet:
        _print_status(lab.status(state))
        print(f"inventory: {LAB_INVENTORY.relative_to(ROOT)}")


@task
@guarded
def lab_down(c):
    """Stop every lab host and remove all the lab made (namespaces, mounts, processes)."""
    from provision.lab import lab

    lab.down()
    LAB_INVENTORY.unlink(missing_ok=True)


@task(help={"json": "machine-readable: hosts, addresses, netns, init PIDs, SSH"})
@guarded
def lab_status(c, json_=False):
    """Show the lab's hosts, addresses, namespaces, PIDs and how to SSH to them."""
    from provision.lab import lab

    st = lab.status(lab.load_state())
    if json_:
        print(json.dumps(st, indent=1))
    else:
        _print_status(st)


def _print_status(st: dict) -> None:
    print(f"lab: {'up' if st['up'] else 'down'}")
    for h in st["hosts"]:
        addr = f"{h['address'] or '-':15} {h['address6'] or '':16}"
        print(f"  {h['name']:8} {h['role']:7} {addr} netns={h['netns']} pid={h['init_pid']}")


@task(help={"host": "lab host name", "cmd": "command line to run as root inside the host"})
@guarded
def lab_run(c, host, cmd):
    """Run a command as root inside a lab host (through its namespaces, no SSH)."""
    from provision.lab import lab

    argv = [*lab.exec_argv(host, lab.running_state()), "sh", "-c", cmd]
    raise Exit(code=subprocess.call(argv))


@task(help={"host": "lab host name"})
@guarded
def lab_shell(c, host):
    """Open a root shell inside a lab host."""
    from provision.lab import lab

    os.execvp("nsenter", [*lab.exec_argv(host, lab.running_state()), "bash", "-l"])


@task(help={"host": "lab host name", "cmd": "optional command to run over SSH"})
@guarded
def lab_ssh(c, host, cmd=""):
    """SSH to a lab host as its inventory user, the way the toolkit reaches it."""
    from provision.lab import lab

    argv = lab.ssh_argv(host, lab.running_state()) + ([cmd] if cmd else [])
    os.execvp("ssh", argv)


@task(help={"host": "lab host name"})
@guarded
def lab_snapshot(c, host):
    """Print a canonical, diffable picture of a lab host's state."""
    from provision.lab import lab, snapshot

    sys.stdout.write(snapshot.take(host, lab.running_state()))


# --- the whole story -------------------------------------------------------------------

@task
@guarded
def demo(c):
    """Run the whole story on the local lab (for now: bring the lab up and show it)."""
    from provision.lab import demo as lab_demo

    lab_demo.run(ROOT, LAB_INVENTORY)


@task(help={"pure": "only the tests that need neither root nor the lab", "k": "pytest -k expression"})
def test(c, pure=False, k=""):
    """Run the test suite (lab tests need root)."""
    args = [sys.executable, "-m", "pytest", "-q"]
    if pure:
        args += ["-m", "not lab"]
    if k:
        args += ["-k", k]
    raise Exit(code=subprocess.call(args, cwd=ROOT))


lab = Collection("lab")
for t, name in ((lab_image, "image"), (lab_up, "up"), (lab_down, "down"), (lab_status, "status"),
                (lab_run, "run"), (lab_shell, "shell"), (lab_ssh, "ssh"), (lab_snapshot, "snapshot")):
    lab.add_task(t, name=name)

ns = Collection(demo, test, lab)
