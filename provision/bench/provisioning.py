"""`invoke bench-deploy`: the same lab host (vps2) configured by our deploy and by an
equivalent Ansible play, first run and no-change re-run, side by side.

    python -m provision.bench.provisioning [--rounds N]

One round: for each tool (the order alternates by round) reset vps2 to a fresh disk, time
the first run, then time a second run that must change nothing.  The Ansible play
(provision/bench/ansible/server.yml) installs the same packages and runtime wheels and
writes the same files, sysctls, nft table and unit; the file contents are those our deploy
wrote, read back from the host's disk after our first run of round 1.

Rule 1: only vps2, reset before each tool and after the run; never `lab.down`.  The run
        holds /tmp/bench.lock.
Rule 2: the inventory is written fresh from the lab's state into the run folder (its
        become password is the lab's own), with its own operator CA beside it.
Rule 3: wall-clock seconds of the whole tool as an operator runs it (our `deploy()` in
        this process; `ansible-playbook` as a process); a run that fails is reported as
        failed with its last lines, never timed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provision.bench.runner import TMP_RESULTS, bench_lock, check_root
from provision.errors import UsageError

HOST = "vps2"
HERE = Path(__file__).resolve().parent
PLAY = HERE / "ansible" / "server.yml"
TOOLS = ("ours", "ansible")
TARGET_RATIO = 1 / 3
Json = dict[str, Any]

# What our deploy writes that the play copies: path on the host -> mode.
FILES = {
    "/etc/vpn-runtime/ca.crt": "0644",
    "/etc/vpn-runtime/server.crt": "0644",
    "/etc/vpn-runtime/server.key": "0600",
    "/etc/vpn-runtime/crl.pem": "0644",
    "/etc/vpn-runtime/server.yml": "0600",
    "/etc/vpn-runtime/server.nft": "0600",
    "/etc/unbound/unbound.conf.d/selfvpn.conf": "0644",
    "/etc/sysctl.d/60-selfvpn-net.ipv4.ip_forward.conf": "0644",
    "/etc/sysctl.d/60-selfvpn-net.ipv6.conf.all.forwarding.conf": "0644",
    "/etc/systemd/system/vpn-runtime.service": "0644",
}


# --- pure parts -------------------------------------------------------------------------------

_RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def parse_ansible_recap(text: str, host: str = HOST) -> Json | None:
    """ok/changed/unreachable/failed of `host` from ansible-playbook's PLAY RECAP."""
    for m in _RECAP.finditer(text):
        if m.group(1) == host:
            return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()[1:])))
    return None


def summarize(runs: Sequence[Json]) -> Json:
    """Per tool and phase: the seconds of the successful runs, their median, min and max."""
    found: Json = {}
    for tool in TOOLS:
        for phase in ("first", "rerun"):
            secs = [r["seconds"] for r in runs if r["tool"] == tool and r["phase"] == phase and r.get("ok")]
            found[f"{tool}_{phase}"] = ({"n": len(secs), "median_s": round(statistics.median(secs), 2),
                                         "min_s": round(min(secs), 2), "max_s": round(max(secs), 2)}
                                        if secs else {"n": 0})
    ours, theirs = found["ours_rerun"].get("median_s"), found["ansible_rerun"].get("median_s")
    found["rerun_ratio"] = round(ours / theirs, 3) if ours and theirs else None
    first_o, first_a = found["ours_first"].get("median_s"), found["ansible_first"].get("median_s")
    found["first_ratio"] = round(first_o / first_a, 3) if first_o and first_a else None
    return found


def render(runs: Sequence[Json], summary: Json) -> str:
    lines = ["## Provisioning vps2: our deploy vs Ansible", "",
             "| tool | first run (median, min-max) | no-change re-run (median, min-max) | re-run changed |",
             "| --- | --- | --- | --- |"]
    for tool in TOOLS:
        cells = []
        for phase in ("first", "rerun"):
            s = summary[f"{tool}_{phase}"]
            cells.append(f"{s['median_s']} s ({s['min_s']}-{s['max_s']}, n={s['n']})" if s["n"] else "-")
        changed = sorted({r.get("changed") for r in runs if r["tool"] == tool and r["phase"] == "rerun"},
                         key=str)
        lines.append(f"| {tool} | {cells[0]} | {cells[1]} | {', '.join(map(str, changed)) or '-'} |")
    ratio = summary["rerun_ratio"]
    verdict = "-" if ratio is None else ("met" if ratio <= TARGET_RATIO else "MISSED")
    lines += ["", f"no-change re-run, ours / Ansible: {ratio if ratio is not None else '-'} "
                  f"(target <= {TARGET_RATIO:.2f}: {verdict}); first run ratio: {summary['first_ratio'] or '-'}",
              "", "| round | tool | phase | seconds | ok | changed |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['round']} | {r['tool']} | {r['phase']} | {r.get('seconds', '-')} | {r.get('ok')} | "
              f"{r.get('changed', '-')} |" for r in runs]
    failed = [r for r in runs if not r.get("ok")]
    lines += [f"\nfailed: round {r['round']} {r['tool']} {r['phase']}: {r.get('error')}" for r in failed]
    return "\n".join(lines) + "\n"


def order(rounds: int) -> list[tuple[int, str]]:
    """(round, tool): ours first in odd rounds, Ansible first in even ones (round 1 is ours
    first: the play's files are read back after our first run)."""
    return [(r, t) for r in range(1, rounds + 1) for t in (TOOLS if r % 2 else TOOLS[::-1])]


# --- the runs ---------------------------------------------------------------------------------

def write_inventory(folder: Path) -> Path:
    from provision.lab import labinventory
    from provision.lab.lab import running_state

    path = folder / "lab.yml"
    labinventory.write(running_state(), path)
    return path


def run_ours(inventory: Path) -> Json:
    from provision.deploy import deploy
    from provision.recap import Console

    out: list[str] = []
    t0 = time.perf_counter()
    try:
        recap = deploy(inventory, HOST, console=Console(write=out.append))
    except Exception as e:  # PlayFailed and friends: reported, never timed
        return {"ok": False, "error": f"{type(e).__name__}: {e} | " + " | ".join(out[-3:])}
    secs = time.perf_counter() - t0
    st = recap.stats(HOST)
    return {"ok": not st.broken, "seconds": round(secs, 2), "changed": st.changed}


def run_ansible(inventory: Path, files: Path, wheels: Path, log: Path) -> Json:
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-l", HOST,
            str(PLAY), "-e", f"bench_files={files}", "-e", f"bench_wheels={wheels}"]
    env = {"ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"}
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    secs = time.perf_counter() - t0
    with open(log, "a") as f:
        f.write(r.stdout + r.stderr)
    recap = parse_ansible_recap(r.stdout)
    if r.returncode != 0 or recap is None:
        return {"ok": False, "error": f"exit {r.returncode}: " + " | ".join((r.stdout + r.stderr).strip().splitlines()[-4:])}
    return {"ok": True, "seconds": round(secs, 2), "changed": recap["changed"]}


def capture(dest: Path) -> None:
    """The files our deploy wrote on vps2, read from its disk (the overlay seen from here)."""
    from provision.lab import container
    from provision.lab.topology import host

    root = container.paths(host(HOST)).root
    for path in FILES:
        src = root / path.lstrip("/")
        if not src.exists():
            raise UsageError(f"{HOST}:{path}: not written by our deploy", "check playbooks/server.yml")
        target = dest / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        target.chmod(0o600)


def pack_wheels(dest: Path) -> Path:
    """The same wheel folder our deploy ships, as one tar."""
    from provision import wheelhouse

    folder = wheelhouse.ensure()
    tar = dest / "wheels.tar"
    with tarfile.open(tar, "w") as t:
        t.add(folder, arcname="wheels")
    return tar


def reset(log: list[str]) -> None:
    from provision.lab.lab import reset_host

    reset_host(HOST, log=log.append)
    wait_ssh()


def wait_ssh(timeout: float = 60.0) -> None:
    """Until vps2's sshd sends its banner through the lab's internet namespace, so that
    neither tool is timed (or failed) for a host still booting."""
    from provision.bench.netns import in_ns, wait_for
    from provision.lab.topology import host

    h = host(HOST)
    argv = in_ns("vpnlab-internet", "timeout", "3", "socat", "-u", f"TCP:{h.addr4}:{h.ssh_port}", "STDOUT")
    ok = wait_for(timeout, lambda: subprocess.run(argv, capture_output=True, timeout=5).stdout.startswith(b"SSH-"),
                  every=0.5)
    if not ok:
        raise UsageError(f"{HOST}: sshd did not answer within {timeout:.0f} s after the reset", "invoke lab.status")


def one_tool(rnd: int, tool: str, ctx: Json) -> list[Json]:
    reset(ctx["log"])
    runs = []
    for phase in ("first", "rerun"):
        print(f"bench-deploy: round {rnd} {tool} {phase}", file=sys.stderr, flush=True)
        if tool == "ours":
            res = run_ours(ctx["inventory"])
        else:
            res = run_ansible(ctx["inventory"], ctx["files"], ctx["wheels"], ctx["state"] / "ansible.log")
        runs.append({"round": rnd, "tool": tool, "phase": phase, **res})
        if tool == "ours" and phase == "first" and res.get("ok") and not ctx["captured"]:
            capture(ctx["files"])
            ctx["captured"] = True
    return runs


def provisioning(rounds: int = 3) -> Json:
    """Run the benchmark, print the tables, return the record (also saved as JSON)."""
    if rounds < 1:
        raise UsageError("need rounds >= 1")
    check_root()
    state = TMP_RESULTS / f"deploy-{time.strftime('%Y%m%d-%H%M%S')}"
    state.mkdir(parents=True)
    ctx: Json = {"state": state, "files": state / "files", "captured": False, "log": []}
    runs: list[Json] = []
    with bench_lock():
        try:
            ctx["inventory"], ctx["wheels"] = write_inventory(state), pack_wheels(state)
            for rnd, tool in order(rounds):
                if tool == "ansible" and not ctx["captured"]:
                    runs.append({"round": rnd, "tool": tool, "phase": "first", "ok": False,
                                 "error": "no files to copy: our first run failed"})
                    continue
                runs += one_tool(rnd, tool, ctx)
        finally:
            reset(ctx["log"])
    summary = summarize(runs)
    record = {"kind": "provisioning", "host": HOST, "rounds": rounds, "runs": runs, "summary": summary,
              "state": str(state)}
    (state / "result.json").write_text(json.dumps(record, indent=1))
    print(render(runs, summary))
    print(f"raw figures: {state}/result.json")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m provision.bench.provisioning", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    try:
        record = provisioning(a.rounds)
    except UsageError as e:
        print(f"bench-deploy: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    return 0 if all(r.get("ok") for r in record["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
