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


# --- servers -------------------------------------------------------------------------

@task(help={"host": "a host, a group or all (from the inventory)", "check": "show the plan; change nothing",
            "diff": "show unified diffs of files and rulesets", "i": "inventory file",
            "verbose": "echo every command run on the hosts"})
@guarded
def deploy(c, host, check=False, diff=False, i="", verbose=False):
    """Take hosts to a running VPN server (idempotent; parallel; journaled for teardown)."""
    from provision import deploy as deploy_mod

    deploy_mod.deploy(_inventory(i), host, check=check, diff=diff, verbose=verbose)


@task(help={"host": "a host, a group or all", "check": "show what would be undone; change nothing",
            "i": "inventory file", "verbose": "echo every command run on the hosts"})
@guarded
def teardown(c, host, check=False, i="", verbose=False):
    """Put hosts back exactly as before the first deploy (replays the host's journal backwards)."""
    from provision import deploy as deploy_mod

    deploy_mod.teardown(_inventory(i), host, check=check, verbose=verbose)


# --- clients -------------------------------------------------------------------------

def _inventory(i: str) -> Path:
    return Path(i) if i else (LAB_INVENTORY if LAB_INVENTORY.exists() else ROOT / "inventory" / "hosts.yml")


def _connect():
    from provision.connection import connect

    return connect


@task(help={"name": "client name (a-z 0-9 . _ -)", "csr": "a CSR made on the laptop: no key in the bundle",
            "expires": "days until the certificate expires (default 365)",
            "force": "reissue: revoke the old certificate and issue a new one", "i": "inventory file"})
@guarded
def add_client(c, name, csr="", expires=0, force=False, i=""):
    """Issue a client and write clients/NAME.bundle (mode 0600) naming every server."""
    from provision import clients

    inv = _inventory(i)
    path = clients.add_client(inv, name, Path(csr) if csr else None, expires or None, force)
    print(f"wrote {path} (mode 0600)")
    if csr:
        print(f"  no key inside: it names {name}.key, to sit beside the bundle on the laptop")
    else:
        print("  it holds the private key: hand it over privately")
    if force:
        results = clients.push_crl(inv, _connect())
        print("\n".join(clients.render_pushes(results)))
        clients.check_pushed(results, "add-client")


@task(help={"name": "client name", "i": "inventory file"})
@guarded
def revoke_client(c, name, i=""):
    """Revoke a client: CRL pushed to every server, live session cut, bundle refused."""
    from provision import clients

    results = clients.revoke_client(_inventory(i), name, _connect())
    print("\n".join(clients.render_pushes(results)))
    clients.check_pushed(results, "revoke-client")


@task(help={"json": "machine-readable output", "i": "inventory file"})
@guarded
def list_clients(c, json_=False, i=""):
    """List issued clients with serial, expiry and state."""
    from provision import clients

    print("\n".join(clients.render_clients(clients.list_clients(_inventory(i)), as_json=json_)))


@task(help={"host": "host, group or all", "json": "machine-readable output", "i": "inventory file"})
@guarded
def status(c, host="vpn_servers", json_=False, i=""):
    """Per server: daemon state, connected clients, bytes, handshake ages, certificate expiries."""
    from provision import clients
    from provision.errors import HostFailed

    rows = clients.server_status(_inventory(i), host, _connect())
    print("\n".join(clients.render_status(rows, as_json=json_)))
    bad = [r["host"] for r in rows if r["state"] != "ok"]
    if bad:
        raise HostFailed(f"status: no answer from {', '.join(bad)}", "check the hosts and run again")


# --- benchmarks and fuzzing ------------------------------------------------------------

@task(help={"rounds": "rounds of interleaved peer runs", "secs": "iperf3 seconds per test",
            "peers": "comma-separated from raw,openvpn,wireguard-go,ours (default: all)",
            "micro": "only the data-channel microbenchmark (no root, no namespaces)",
            "save": "write results under provision/bench/results/ instead of /tmp/selfvpn-bench/"})
@guarded
def bench(c, rounds=3, secs=10, peers="", micro=False, save=False):
    """Benchmark our tunnel against OpenVPN 2.6, wireguard-go and the bare path (not a test)."""
    from provision.bench.runner import bench as run_bench

    run_bench(rounds=rounds, secs=secs, peers=peers, micro=micro, save=save)


@task(help={"clients": "simulated clients (each with its own certificate)", "hold": "seconds to hold them",
            "sources": "source addresses the clients come from", "concurrency": "handshakes in flight"})
@guarded
def bench_load(c, clients=1000, hold=30, sources=200, concurrency=64):
    """Server load benchmark: many protocol sessions against one vpn-runtime serve (not a test)."""
    from provision.bench.load import load

    load(clients=int(clients), hold=float(hold), sources=int(sources), concurrency=int(concurrency))


@task(help={"rounds": "rounds of each tool"})
@guarded
def bench_deploy(c, rounds=3):
    """Provisioning benchmark: our deploy against an equivalent Ansible play on lab host vps2."""
    from provision.bench.provisioning import provisioning

    provisioning(rounds=int(rounds))


@task(help={"minutes": "total time for all targets", "target": "fuzz only this target",
            "strict": "count known bugs as findings too"})
def fuzz(c, minutes=10.0, target="", strict=False):
    """Fuzz every parser of outside input for N minutes; new crashes land in tests/fuzz/corpus/."""
    argv = [sys.executable, str(ROOT / "tests" / "fuzz" / "run.py"), "--minutes", str(minutes)]
    argv += (["--target", target] if target else []) + (["--strict"] if strict else [])
    raise Exit(code=subprocess.call(argv, cwd=ROOT))


# --- the whole story -------------------------------------------------------------------

@task
@guarded
def demo(c):
    """The whole story on the local lab: deploy, add-client, up, revoke, down, teardown."""
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
    # the native data path must have been built (runtime/fast.py); tests compare it with the Python one
    env = {**os.environ, "VPN_RUNTIME_NATIVE": os.environ.get("VPN_RUNTIME_NATIVE", "require")}
    raise Exit(code=subprocess.call(args, cwd=ROOT, env=env))


lab = Collection("lab")
for t, name in ((lab_image, "image"), (lab_up, "up"), (lab_down, "down"), (lab_status, "status"),
                (lab_run, "run"), (lab_shell, "shell"), (lab_ssh, "ssh"), (lab_snapshot, "snapshot")):
    lab.add_task(t, name=name)

ns = Collection(demo, test, deploy, teardown, add_client, revoke_client, list_clients, status, bench,
                bench_load, bench_deploy, fuzz, lab)
