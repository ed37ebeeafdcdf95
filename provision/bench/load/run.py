"""`load()`: one `vpn-runtime serve` daemon against many generated clients, in our own lab.

Phases, all under /tmp/bench.lock:
  1. server alone: RSS with 0 sessions (after 3 s of settling)
  2. ramp: the generator connects every client (`concurrency` handshakes in flight);
     handshakes per second = clients / time until all are up
  3. idle: 2 s after the ramp, RSS with every session up -> memory per idle client
  4. hold: `hold` seconds of keepalives only; server CPU (% of one core), RSS every
     `interval` s, sessions ended or silent (liveness).  RSS growth is judged only after
     the first rekey wave and its grace (stats.warmup_s: 120 + 30 + 10 s), since every
     session of the ramp rekeys within the same seconds and the allocator keeps that peak;
     a hold shorter than that plus two samples concludes nothing about memory.
  5. restart: SIGTERM to the server, start it again; time until every client has made a
     new handshake and is up (the generator backs off like the real client)

Rule 1: figures come from /proc (the server's PID and its children) and the generator's
        status lines; a phase that does not finish leaves its figures None and says why.
Rule 2: the lab, the server and the generator are always removed, also on errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from provision.bench import measure
from provision.bench.load import netlab, stats
from provision.bench.load.certs import CACHE, SERVER_NAME, LoadPki, load_pki
from provision.bench.netns import LabError, Procs, has_address, in_ns, listening, stop_pid, wait_for
from provision.bench.runner import TMP_RESULTS, bench_lock, check_root

ROOT = Path(__file__).resolve().parents[3]
DEV, CONTROL_PORT, DATA_PORT, KEEPALIVE, REKEY = "vpnlab-ltun", 8443, 51820, 10, 120
Json = dict[str, Any]


@dataclass(frozen=True)
class LoadSettings:
    clients: int = 1000
    hold: float = 30.0
    sources: int = 200
    concurrency: int = 64
    ping_every: float = 0.0
    interval: float | None = None  # RSS sampling during the hold (default: hold/10, 5..60 s)
    restart: bool = True
    network: str = "10.100.0.0/20"
    cache: Path = CACHE

    @property
    def every(self) -> float:
        return self.interval or min(60.0, max(5.0, self.hold / 10))


class Generator:
    """The generator process and the status lines it prints (collected by a thread)."""

    def __init__(self, spec_path: Path, log: Path) -> None:
        self.statuses: list[Json] = []
        self.log = log
        with open(log, "wb") as err:
            self.popen = subprocess.Popen(
                in_ns(netlab.NS_C, sys.executable, "-m", "provision.bench.load.worker", str(spec_path)),
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:  # type: ignore[union-attr]
            self.statuses.extend(stats.parse_status([line]))

    def last(self) -> Json | None:
        return self.statuses[-1] if self.statuses else None

    def wait(self, timeout: float, ok: Any) -> Json | None:
        """The first status from now on for which `ok` holds, or None after `timeout` s."""
        seen, deadline = len(self.statuses), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise LabError(f"the generator exited {self.popen.returncode}: {tail(self.log)}")
            for s in self.statuses[seen:]:
                if ok(s):
                    return s
            seen = len(self.statuses)
            time.sleep(0.1)
        return None

    def stop(self) -> None:
        stop_pid(self.popen.pid, grace=3.0)
        self.popen.wait(timeout=5)


def tail(path: Path, lines: int = 4) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# --- the server -----------------------------------------------------------------------------

def write_server(state: Path, pki: LoadPki, network: str) -> Path:
    config = {
        "name": SERVER_NAME, "network": network, "listen": netlab.SERVER_IP, "control_port": CONTROL_PORT,
        "data_port": DATA_PORT, "interface": DEV, "keepalive": KEEPALIVE, "rekey_seconds": REKEY,
        "paths": {"ca": str(pki.ca_cert), "cert": str(pki.server_cert), "key": str(pki.server_key),
                  "crl": str(pki.crl), "control_socket": str(state / "run" / "control.sock"),
                  "leases": str(state / "leases.json")},
    }
    (state / "run").mkdir(mode=0o700, exist_ok=True)
    path = state / "server.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_server(procs: Procs, config: Path, network: str, name: str = "server") -> int:
    runtime = str(Path(sys.executable).parent / "vpn-runtime")
    proc = procs.spawn("server", netlab.NS_S, name, [runtime, "serve", str(config)],
                       {"VPN_RUNTIME_RUN_DIR": str(config.parent / "run")})
    server_ip = _first_host(network)
    ready = wait_for(30, lambda: proc.exited() is None and has_address(netlab.NS_S, DEV, server_ip)
                     and listening(netlab.NS_S, CONTROL_PORT), every=0.05)
    if not ready or proc.exited() is not None:
        raise LabError(f"server did not start: {proc.tail()}")
    return proc.pid


def _first_host(network: str) -> str:
    from ipaddress import IPv4Network

    return str(IPv4Network(network)[1])


def server_rss(pid: int) -> int:
    return measure.memory_kb(measure.descendants([pid]))["rss_kb"]


def ticks(pid: int) -> int:
    return sum(measure.cpu_ticks(measure.descendants([pid])).values())


# --- the phases -----------------------------------------------------------------------------

def ramp(gen: Generator, clients: int, timeout: float) -> Json:
    done = gen.wait(timeout, lambda s: s["up"] >= clients)
    last = gen.last() or {}
    if done is None:
        return {"error": f"only {last.get('up')} of {clients} up after {timeout:.0f} s", "reasons": last.get("reasons")}
    return {"seconds": done["ramp_s"], "handshakes_per_s": stats.rate(clients, done["ramp_s"]),
            "attempts": done["attempts"], "failures": done["failures"], "reasons": done["reasons"],
            "latency": done["first_latency"], "echo_tx": done["echo_tx"], "echo_rx": done["echo_rx"]}


def hold_phase(gen: Generator, pid: int, wpid: int, s: LoadSettings) -> Json:
    t0, cpu0, wcpu0 = time.monotonic(), ticks(pid), ticks(wpid)
    before, samples = gen.last(), [(0.0, server_rss(pid))]
    while (now := time.monotonic()) < t0 + s.hold:
        time.sleep(min(s.every, t0 + s.hold - now))
        samples.append((round(time.monotonic() - t0, 1), server_rss(pid)))
        print(f"load: hold {samples[-1][0]:.0f}/{s.hold:.0f} s, server RSS {samples[-1][1]} KiB, "
              f"up {(gen.last() or {}).get('up')}", file=sys.stderr, flush=True)
    secs = time.monotonic() - t0
    cpu, wcpu, after = ticks(pid) - cpu0, ticks(wpid) - wcpu0, gen.last()
    window = [x for x in gen.statuses if before is not None and x["t"] > before["t"]]
    return {"seconds": round(secs, 1), "server_cpu_pct": stats.core_pct(cpu, measure.CLK_TCK, secs),
            "generator_cpu_pct": stats.core_pct(wcpu, measure.CLK_TCK, secs),
            "liveness": stats.hold_liveness(before, after, window, s.clients) if before and after else None,
            "rss_samples": samples, "memory": stats.flatness(samples, memory_warmup())}


def memory_warmup() -> float:
    """Seconds of the hold before RSS growth is judged (see the module docstring, phase 4)."""
    from runtime.proto.config import Limits

    return stats.warmup_s(REKEY, Limits().old_key_grace, KEEPALIVE)


def restart_phase(gen: Generator, procs: Procs, config: Path, s: LoadSettings) -> tuple[Json, int]:
    old = procs.pids("server")[0]
    before = gen.last() or {"handshakes": 0}
    t_kill = time.monotonic()
    stop_pid(old)
    procs.started = [p for p in procs.started if p.pid != old]
    t_gone = time.monotonic()
    pid = start_server(procs, config, s.network, "server-restarted")
    t_listen = time.monotonic()
    done = gen.wait(120, lambda x: x["up"] >= s.clients and x["handshakes"] - before["handshakes"] >= s.clients)
    found: Json = {"server_stop_s": round(t_gone - t_kill, 2), "server_down_s": round(t_listen - t_kill, 2)}
    if done is None:
        last = gen.last() or {}
        found["error"] = (f"{last.get('up')} of {s.clients} back after 120 s "
                          f"({last.get('handshakes', 0) - before['handshakes']} new handshakes)")
        found["reasons"] = last.get("reasons")
        return found, pid
    back = done["all_up_t"] or done["t"]
    found.update(all_back_s=round(back - t_kill, 2), after_listen_s=round(back - t_listen, 2),
                 attempts=done["attempts"] - before.get("attempts", 0),
                 failures=done["failures"] - before.get("failures", 0), reasons=done["reasons"])
    return found, pid


# --- the whole run ----------------------------------------------------------------------------

def measure_all(s: LoadSettings, state: Path, pki: LoadPki, procs: Procs) -> Json:
    sources = netlab.up(s.sources)
    config = write_server(state, pki, s.network)
    pid = start_server(procs, config, s.network)
    time.sleep(3.0)
    res: Json = {"rss_0_kb": server_rss(pid)}
    spec = state / "spec.json"
    spec.write_text(json.dumps(worker_spec(pki, sources, s)))
    cpu0, t0 = ticks(pid), time.monotonic()
    gen = Generator(spec, state / "generator.log")
    try:
        res["ramp"] = ramp(gen, s.clients, 60 + s.clients * 0.3)
        spent = time.monotonic() - t0
        res["ramp"]["server_cpu_pct"] = stats.core_pct(ticks(pid) - cpu0, measure.CLK_TCK, spent)
        res["ramp"]["generator_cpu_pct"] = stats.core_pct(ticks(gen.popen.pid), measure.CLK_TCK, spent)
        if "error" in res["ramp"]:
            return res
        time.sleep(2.0)
        res["rss_loaded_kb"] = server_rss(pid)
        res["kib_per_client"] = stats.per_client_kib(res["rss_0_kb"], res["rss_loaded_kb"], s.clients)
        res["hold"] = hold_phase(gen, pid, gen.popen.pid, s)
        if s.restart:
            res["restart"], pid = restart_phase(gen, procs, config, s)
            time.sleep(2.0)
            res["rss_after_restart_kb"] = server_rss(pid)
    finally:
        res["generator_log"] = tail(gen.log)
        gen.stop()
    return res


def worker_spec(pki: LoadPki, sources: list[str], s: LoadSettings) -> Json:
    from runtime.pin import pin_of_pem

    return {"server": netlab.SERVER_IP, "control_port": CONTROL_PORT, "data_port": DATA_PORT,
            "server_name": SERVER_NAME, "pin": pin_of_pem(pki.server_cert.read_text()), "ca": str(pki.ca_cert),
            "certs": [str(c) for c in pki.clients[:s.clients]], "sources": sources,
            "concurrency": s.concurrency, "ping_every": s.ping_every, "keepalive": KEEPALIVE}


def run_load(s: LoadSettings) -> Json:
    check_root()
    t0 = time.perf_counter()
    pki = load_pki(s.clients, netlab.SERVER_IP, s.cache)
    record: Json = {"kind": "load", "settings": {k: str(v) if isinstance(v, Path) else v
                                                 for k, v in asdict(s).items()},
                    "pki": {"cache": str(pki.folder), "issued_s": round(pki.issued_s, 2),
                            "ready_s": round(time.perf_counter() - t0, 2)},
                    "host": {"ncpu": os.cpu_count()}}
    TMP_RESULTS.mkdir(parents=True, exist_ok=True)
    state = TMP_RESULTS / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    state.mkdir()
    procs = Procs(state, "load")
    with bench_lock():
        try:
            record.update(measure_all(s, state, pki, procs))
        except (LabError, OSError, subprocess.SubprocessError) as e:
            record["error"] = f"{type(e).__name__}: {e}"
        finally:
            procs.stop_all()
            if left := netlab.down():
                record["leftovers"] = left
    record["state"] = str(state)
    (state / "result.json").write_text(json.dumps(record, indent=1))
    return record
