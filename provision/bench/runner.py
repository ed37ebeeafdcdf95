"""`invoke bench`: rounds of interleaved peer runs in a fresh two-namespace lab each, to JSONL
and a markdown table.

One peer run: take /tmp/bench.lock, build the lab, prepare the peer (untimed), start iperf3
and the server, start the client and time it to the first echo reply through the tunnel
(split at its first packet on the underlay), let it settle, sample idle RSS, ping underlay
and tunnel together, run iperf3 (TCP 1 and 4 streams both ways, UDP at the offered rate) with
CPU/RSS sampling, stop everything by PID, remove the lab, release the lock.

Rule 1: nothing runs in the root network namespace (see provision/bench/netns.py).
Rule 2: every run yields one record; a peer that does not start yields `ok: false` with
"failed to start: ..." and no figures, and the other peers' runs go on.
Rule 3: results go to /tmp/selfvpn-bench/ unless `save`, which writes them under
provision/bench/results/; the markdown is printed and written beside the JSONL.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.bench import measure, netns, peers, report
from provision.bench.netns import NS_CLI, NS_SRV, LabError, Procs
from provision.bench.peers import NAMES, Peer, PeerFailed
from provision.errors import UsageError

SCHEMA = "selfvpn-bench/1"
TMP_RESULTS = Path("/tmp/selfvpn-bench")
SAVED_RESULTS = Path(__file__).resolve().parent / "results"
Json = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    secs: int = 10
    peers: tuple[str, ...] = NAMES
    udp_rate: str = "1G"
    ping_count: int = 50
    connect_timeout: float = 30.0
    micro: bool = True
    state: Path = field(default=TMP_RESULTS / "state")


def interleave(names: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """(round, peer) in run order: every peer once per round, the order rotated each round."""
    order = []
    for r in range(rounds):
        shift = r % len(names) if names else 0
        order += [(r + 1, name) for name in [*names[shift:], *names[:shift]]]
    return order


def parse_peers(spec: str | Sequence[str]) -> tuple[str, ...]:
    names = tuple(p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip())
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise UsageError(f"unknown peer(s): {', '.join(unknown)}", f"choose from {', '.join(NAMES)}")
    return names or NAMES


# --- entry point ------------------------------------------------------------------------------

def bench(rounds: int = 3, secs: int = 10, peers: str | Sequence[str] = "", micro: bool = False,
          save: bool = False, udp_rate: str = "1G") -> Path:
    """Run the benchmark (or only the microbenchmark with `micro`), print the table, return the JSONL path."""
    if rounds < 1 or secs < 2:
        raise UsageError("need --rounds >= 1 and --secs >= 2")
    settings = Settings(rounds=rounds, secs=secs, peers=parse_peers(peers), udp_rate=udp_rate)
    out = results_path(save)
    if micro:
        records = micro_records()
    else:
        check_root()
        records = [*micro_records(), *peer_runs(settings, out)]
    write_jsonl(out, records, append=False)
    text = report.render(records, f"selfvpn benchmark — {out.stem}")
    out.with_suffix(".md").write_text(text)
    print(text)
    print(f"raw figures: {out}\nmarkdown:    {out.with_suffix('.md')}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m provision.bench [--rounds N] [--secs S] [--peers a,b] [--micro] [--save]`."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m provision.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=10)
    p.add_argument("--peers", default="", help=f"comma-separated, from {','.join(NAMES)} (default: all)")
    p.add_argument("--udp-rate", default="1G")
    p.add_argument("--micro", action="store_true", help="only the data-channel microbenchmark (no root)")
    p.add_argument("--save", action="store_true", help="write results under provision/bench/results/")
    a = p.parse_args(argv)
    try:
        bench(a.rounds, a.secs, a.peers, a.micro, a.save, a.udp_rate)
    except (UsageError, LabError) as e:
        print(f"bench: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    return 0


def check_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("the benchmark builds network namespaces: run it as root", "or use --micro")


def results_path(save: bool) -> Path:
    folder = SAVED_RESULTS if save else TMP_RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{datetime.datetime.now():%Y-%m-%d-%H%M%S}.jsonl"


def write_jsonl(path: Path, records: Sequence[Json], append: bool = True) -> None:
    with open(path, "a" if append else "w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")


def micro_records() -> list[Json]:
    from provision.bench.micro import run_micro

    return [{"schema": SCHEMA, **r} for r in run_micro()]


def peer_runs(settings: Settings, out: Path) -> list[Json]:
    """Every (round, peer) run in interleaved order; each record is also appended as it lands."""
    records = []
    order = interleave(settings.peers, settings.rounds)
    for i, (rnd, name) in enumerate(order, 1):
        print(f"bench: [{i}/{len(order)}] round {rnd} {name}", file=sys.stderr, flush=True)
        record = run_peer(peers.make(name), rnd, settings)
        print(f"bench:   {'ok' if record['ok'] else 'FAILED: ' + str(record.get('error'))}", file=sys.stderr)
        write_jsonl(out.with_suffix(".partial"), [record])
        records.append(record)
    out.with_suffix(".partial").unlink(missing_ok=True)
    return records


# --- one run ----------------------------------------------------------------------------------

@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """Hold /tmp/bench.lock for a whole run, so no other benchmark overlaps it."""
    with open(netns.LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"bench: waiting for {netns.LOCK}", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def base_record(peer: Peer, rnd: int, settings: Settings) -> Json:
    return {
        "schema": SCHEMA, "kind": "peer", "peer": peer.name, "round": rnd,
        "ts": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": peer.target, "mtu": peer.mtu, "secs": settings.secs, "udp_rate": settings.udp_rate,
        "probe_ms": measure.PROBE_EVERY * 1000, "host": {"ncpu": os.cpu_count(), "kernel": platform.release(), "iperf3": iperf_version()},
    }


def run_peer(peer: Peer, rnd: int, settings: Settings) -> Json:
    """One peer run in a fresh lab; always returns a record, never leaves the lab behind."""
    record = base_record(peer, rnd, settings)
    settings.state.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix=f"r{rnd}-{peer.name}-", dir=settings.state))
    procs = Procs(state, f"r{rnd}-{peer.name}")
    with bench_lock():
        try:
            netns.lab_up()
            record["version"] = peer.version()
            record["tcp_cc"] = netns.run(netns.in_ns(NS_CLI, "cat", "/proc/sys/net/ipv4/tcp_congestion_control"),
                                         check=False).stdout.strip() or None
            record["import_ms"] = peer.startup_floor_ms()  # untimed, kept even if the peer fails
            record.update(measure_peer(peer, procs, state, settings))
            record["ok"] = "error" not in record
        except PeerFailed as e:
            record.update(ok=False, error=f"failed to start: {e}")
        except (LabError, OSError, subprocess.SubprocessError) as e:
            record.update(ok=False, error=f"{type(e).__name__}: {e}")
        except Exception as e:  # a peer's own code failing (e.g. ours unfinished) is a failed start
            record.update(ok=False, error=f"failed to start: {type(e).__name__}: {e}")
        finally:
            record.update(teardown(procs))
    record["state"] = str(state)
    return record


def measure_peer(peer: Peer, procs: Procs, state: Path, settings: Settings) -> Json:
    peer.prepare(state)
    procs.spawn("iperf3", NS_SRV, "iperf3-server", ["iperf3", "-s"])
    t0 = time.monotonic()
    peer.start_server(procs)
    res: Json = {"connect": {"server_up_ms": round((time.monotonic() - t0) * 1000, 1)}}
    res["connect"].update(connect(peer, procs, settings.connect_timeout))
    if not netns.wait_for(10, lambda: netns.listening(NS_SRV, 5201)):
        raise LabError("iperf3 server not listening")
    time.sleep(1.0)
    sides = {"client": procs.pids("client"), "server": procs.pids("server")} if peer.tunnel else {}
    res["rss_idle"] = measure.memory_by_side(sides)
    res["ping"] = measure.ping_both(peer.target, settings.ping_count)
    tests = (*measure.TESTS, measure.IperfTest("udp", udp_rate=settings.udp_rate))
    for test in tests:
        res[test.label] = measure.run_iperf(test, peer.target, settings.secs, sides)
        time.sleep(0.5)
    res["rss_end"] = measure.memory_by_side(sides)
    res["notes"] = peer.notes(procs)
    errors = [f"{k}: {v['error']}" for k, v in res.items() if isinstance(v, dict) and v.get("error")]
    if dead := procs.dead():
        errors.append(f"{dead.name} exited during the run: {dead.tail()}")
    return {**res, **({"error": "; ".join(errors)} if errors else {})}


def connect(peer: Peer, procs: Procs, timeout: float) -> Json:
    """Client start → first echo reply through the tunnel, split at the first underlay packet."""
    capture, probe = measure.Capture(), measure.Probe(peer.target)
    try:
        t0 = time.time_ns()
        peer.start_client(procs)
        deadline = time.monotonic() + timeout
        while not probe.attempt():
            if procs.dead() or time.monotonic() > deadline:
                dead = procs.dead()
                why = f"{dead.name} exited {dead.exited()}: {dead.tail()}" if dead else f"no reply in {timeout:.0f} s"
                raise PeerFailed(f"{peer.name}: tunnel not usable: {why}")
        t2 = time.time_ns()
        first = measure.first_underlay_packet(capture.drain(), t0) if peer.tunnel else None
    finally:
        capture.close()
        probe.close()
    return split_connect(t0, first, t2)


def split_connect(t0_ns: int, first_ns: int | None, reply_ns: int) -> Json:
    """connect_ms, and start-up / handshake when the client's first packet was seen."""
    found: Json = {"connect_ms": round((reply_ns - t0_ns) / 1e6, 2)}
    if first_ns is not None and t0_ns <= first_ns <= reply_ns:
        found["startup_ms"] = round((first_ns - t0_ns) / 1e6, 2)
        found["handshake_ms"] = round((reply_ns - first_ns) / 1e6, 2)
    return found


def teardown(procs: Procs) -> Json:
    """Stop every process by PID, check the lab is clean, remove it."""
    procs.stop_all()
    found: Json = {}
    if netns.ns_exists(NS_CLI) or netns.ns_exists(NS_SRV):
        extra = netns.extra_devices() if netns.ns_exists(NS_CLI) and netns.ns_exists(NS_SRV) else []
        left = netns.lab_down()
        if extra or left:
            found["leftovers"] = extra + left
    return found


def iperf_version() -> str:
    try:
        r = subprocess.run(["iperf3", "--version"], capture_output=True, text=True)
    except OSError:
        return "not installed"
    return (r.stdout.splitlines() or ["?"])[0].strip()
