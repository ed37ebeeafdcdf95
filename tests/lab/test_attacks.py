"""Under attack: the real daemon on vps3 against an attacker on laptop2, with a legitimate
client on laptop.

- Silence: 10^5 garbage, truncated, oversized, replayed and wrong-key datagrams to the data
  port, plus junk to the control port: not one datagram (nor ICMP) back to the attacker,
  no session and no endpoint change, drops counted, the daemon's RSS flat, and the
  client's ping through the tunnel keeps flowing.
- Handshake flood: connect-and-sit and TLS without or with a bad certificate, faster than
  the per-source rate: a real `up` succeeds meanwhile, the refusals are counted and logged
  once per source per interval.
- mTLS negatives end to end: each refused with exit code 8 and one line naming the
  reason, and logged once by the server (where the server refuses) with its reason.
- Replay: a captured data datagram sent again from its own address and port and from
  laptop2 is dropped as "replay" and moves nothing.

Attack scripts run with the hosts' own python3 (stdlib only).  Every address is a lab one.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import struct
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provision import pki
from runtime.bundle import Bundle, ServerEndpoint, write_bundle
from runtime.clientsys import FWMARK
from tests.lab.vpn import CONF, CONTROL_PORT, DATA_PORT, RUNTIME_SERVER as S, SERVERS, Vpn, install_runtime, put, root_of, sh

pytestmark = pytest.mark.lab
SERVER_IP, LAPTOP_IP, ATTACKER_IP = SERVERS[S], "192.0.2.10", "192.0.2.11"
ATTACKER = "laptop2"
SPLIT = "--route 10.8.0.0/24"  # only the tunnel's own net: an idle laptop sends nothing else through it

# -- scripts run inside lab hosts ----------------------------------------------------------

DATAGRAM_FLOOD = r'''
import json, os, random, socket, struct, sys, time
host, port, total, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
session, captured = int(sys.argv[5], 16), bytes.fromhex(sys.argv[6])
rnd = random.Random(7)
def garbage(): return os.urandom(rnd.randint(32, 1400))
def truncated(): return bytes([1, 0, 0, 0]) + os.urandom(rnd.randint(0, 27)) if rnd.random() < .5 else os.urandom(rnd.randint(0, 31))
def oversized(): return os.urandom(rnd.choice((1473, 2000, 4000, 9000, 65507)))
def replayed(): return captured
def wrong_key():  # a well-formed header naming the live session, sealed under no key it holds
    return struct.pack("!BBBBIQ", rnd.choice((1, 2)), 0, 0, 0, session, rnd.getrandbits(64)) + os.urandom(rnd.randint(16, 1400))
kinds = {"garbage": (garbage, 40), "truncated": (truncated, 20), "oversized": (oversized, 5),
         "replayed": (replayed, 15), "wrong-key": (wrong_key, 20)}
names = list(kinds)
weights = [kinds[n][1] for n in names]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent, errors, nbytes = dict.fromkeys(names, 0), 0, 0
start = time.monotonic()
for i in range(total):
    if i % 50 == 0:
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    name = rnd.choices(names, weights)[0]
    data = kinds[name][0]()
    try:
        sock.sendto(data, (host, port))
        sent[name] += 1
        nbytes += len(data)
    except OSError:
        errors += 1
elapsed = time.monotonic() - start
sock.settimeout(0.5)
try:
    answers = len(sock.recvfrom(65535)[0])
except OSError:
    answers = 0
print(json.dumps({"sent": sent, "errors": errors, "bytes": nbytes, "seconds": elapsed, "answer_bytes": answers}))
'''

CONTROL_JUNK = r'''
import json, os, socket, sys, time
host, port, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
junk = [lambda: os.urandom(1000), lambda: b"\x16\x03\x01\x02\x00\x01" + os.urandom(300),
        lambda: b"GET / HTTP/1.0\r\n\r\n", lambda: b"\x16\x03\x03\xff\xff" + os.urandom(60000), lambda: b"\x00" * 5]
got, outcomes = 0, {}
for i in range(count):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.5)
    try:
        s.connect((host, port))
        s.sendall(junk[i % len(junk)]())
        while data := s.recv(65536):
            got += len(data)
        outcome = "closed"
    except ConnectionResetError:
        outcome = "reset"
    except OSError as e:
        outcome = type(e).__name__
    finally:
        s.close()
    outcomes[outcome] = outcomes.get(outcome, 0) + 1
    time.sleep(gap)
print(json.dumps({"connections": count, "reply_bytes": got, "outcomes": outcomes}))
'''

HANDSHAKE_FLOOD = r'''
import asyncio, json, ssl, sys, time
host, port, seconds, rate, cert, key = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
no_cert.check_hostname, no_cert.verify_mode = False, ssl.CERT_NONE
bad_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
bad_cert.check_hostname, bad_cert.verify_mode = False, ssl.CERT_NONE
bad_cert.load_cert_chain(cert, key)
MODES = [("sit", None), ("tls-no-cert", no_cert), ("tls-bad-cert", bad_cert)]
outcomes, lifetimes = {}, {"refused-at-once": 0, "held": 0}

async def attempt(i):
    mode, ctx = MODES[i % 3]
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), 5)
        data = await asyncio.wait_for(r.read(1), 15)
        outcome = "closed" if not data else "data"
        w.close()
    except ConnectionResetError:
        outcome = "reset"
    except ssl.SSLError as e:
        outcome = "tls-alert" if "ALERT" in str(e).upper() else "tls-error"
    except asyncio.TimeoutError:
        outcome = "timeout"
    except OSError as e:
        outcome = type(e).__name__
    key = f"{mode}:{outcome}"
    outcomes[key] = outcomes.get(key, 0) + 1
    held = time.monotonic() - t0
    lifetimes["refused-at-once" if held < 0.5 else "held"] += 1

async def main():
    tasks, start, i = [], time.monotonic(), 0
    while time.monotonic() - start < seconds:
        tasks.append(asyncio.ensure_future(attempt(i)))
        i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
    await asyncio.gather(*tasks)
    print(json.dumps({"attempts": i, "seconds": time.monotonic() - start, "outcomes": outcomes, **lifetimes}))
asyncio.run(main())
'''

RAW_TLS_CLIENT = r'''
import socket, ssl, sys
host, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.load_cert_chain(cert, key)
try:
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        print("read", s.recv(1))
except (ssl.SSLError, OSError) as e:
    print("refused", e)
'''

RAW_REPLAY = r'''
import socket, struct, sys
src, sport, dst, dport, mark, count, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), bytes.fromhex(sys.argv[7])
udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
for _ in range(count):
    s.sendto(ip + udp, (dst, 0))
'''

UDP_REPLAY = r'''
import socket, sys
dst, dport, count, payload = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bytes.fromhex(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(payload, (dst, dport))
'''


# -- fixtures and helpers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def vpn(lab, tmp_path_factory):
    for host in (S, "laptop", ATTACKER):
        install_runtime(lab, host)
    v = Vpn(lab, pki.init_ca(tmp_path_factory.mktemp("ca")), {})
    v.start_server(S)
    for name, text in (("flood.py", DATAGRAM_FLOOD), ("junk.py", CONTROL_JUNK), ("hsflood.py", HANDSHAKE_FLOOD),
                       ("tlsclient.py", RAW_TLS_CLIENT), ("replay.py", UDP_REPLAY)):
        put(lab, ATTACKER, f"/root/attack/{name}", text)
    put(lab, "laptop", "/root/attack/rawreplay.py", RAW_REPLAY)
    yield v
    for host in ("laptop", ATTACKER):
        sh(lab, host, "vpn-runtime down; rm -rf /root/attack /root/*.bundle /root/certs", check=False)
    v.stop_server(S)


@pytest.fixture(autouse=True)
def lab_is_ours(vpn):
    """These tests share vps3 and the laptops with other sessions: say so plainly when the
    server is not ours any more or a laptop already holds a tunnel, instead of failing oddly."""
    crt = root_of(vpn.lab, S) / CONF.lstrip("/") / "server.crt"
    ours = crt.exists() and crt.read_text() == vpn.server_certs[S]
    assert ours, "vps3 runs another session's server, or none: run this file alone"
    for host in ("laptop", ATTACKER):
        held = sh(vpn.lab, host, "nft list table inet selfvpn", check=False).returncode == 0
        assert not held, f"{host} holds a tunnel (another session?): run this file alone"


@pytest.fixture
def alice(vpn):
    """alice connected from the laptop (split tunnel); `down` at the end whatever happens."""
    path = vpn.give("laptop", vpn.bundle("alice"))
    sh(vpn.lab, "laptop", f"vpn-runtime up {path} {SPLIT}", timeout=60)
    try:
        yield server_status(vpn)["clients"][0]
    finally:
        sh(vpn.lab, "laptop", "vpn-runtime down", check=False)


def server_status(vpn) -> dict:
    return json.loads(sh(vpn.lab, S, "vpn-runtime status --json").stdout)


def daemon_pid(vpn) -> int:
    return int(sh(vpn.lab, S, "systemctl show -p MainPID --value vpn-test").stdout)


def daemon_rss_kb(vpn) -> int:
    return int(sh(vpn.lab, S, f"ps -o rss= -p {daemon_pid(vpn)}").stdout)


def same_daemon(vpn, pid: int) -> None:
    """Fail plainly when the daemon was restarted under the test (another session on vps3)."""
    assert daemon_pid(vpn) == pid, "vpn-test on vps3 was restarted during the test: is another session using vps3?"


def journal_cursor(vpn) -> str:
    out = sh(vpn.lab, S, "journalctl -u vpn-test -n 0 --show-cursor --no-pager").stdout
    return out.strip().rsplit("cursor: ", 1)[-1]


def journal_since(vpn, cursor: str) -> list[str]:
    out = sh(vpn.lab, S, f"journalctl -u vpn-test --after-cursor '{cursor}' --no-pager -o cat").stdout
    return out.splitlines()


def start_capture(vpn, unit: str, path: str, bpf: str) -> None:
    sh(vpn.lab, S, f"rm -f {path}; systemd-run --unit {unit} tcpdump -i eth0 -nn -U --immediate-mode -w {path} '{bpf}'; sleep 1")


def stop_capture(vpn, unit: str) -> None:
    sh(vpn.lab, S, f"sleep 0.5; systemctl stop {unit}", check=False)


def udp_payloads(pcap: bytes) -> list[tuple[str, int, bytes]]:
    """(source address, source port, payload) of each IPv4/UDP packet in a pcap of eth0."""
    endian = "<" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    found, off = [], 24
    while off + 16 <= len(pcap):
        incl = struct.unpack(endian + "I", pcap[off + 8:off + 12])[0]
        ip, off = pcap[off + 16 + 14:off + 16 + incl], off + 16 + incl
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        found.append((socket.inet_ntoa(ip[12:16]), int.from_bytes(ip[ihl:ihl + 2], "big"), ip[ihl + 8:]))
    return found


def capture_data_datagram(vpn) -> tuple[str, int, bytes]:
    """One DATA datagram (type 1) of alice's session as it reached the server's eth0."""
    start_capture(vpn, "attack-grab", "/tmp/grab.pcap", f"udp and src host {LAPTOP_IP} and dst port {DATA_PORT}")
    sh(vpn.lab, "laptop", "ping -c3 -i0.2 -W1 10.8.0.1")
    stop_capture(vpn, "attack-grab")
    data = [d for d in udp_payloads((root_of(vpn.lab, S) / "tmp/grab.pcap").read_bytes()) if d[2][:1] == b"\x01"]
    assert data, "no data datagram from the laptop was captured on the server"
    return data[-1]


def ping_loss(output: str) -> float:
    return float(re.search(r"([\d.]+)% packet loss", output).group(1))


def parallel(*calls):
    """Run the calls (thunks) at once; their results, in order."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def report(record: dict) -> None:
    print("measured:", json.dumps(record))


# -- 1. silence ----------------------------------------------------------------------------

def test_a_datagram_flood_and_control_junk_get_no_answer_and_change_nothing(vpn, alice):
    _, _, captured = capture_data_datagram(vpn)
    flood = f"python3 /root/attack/flood.py {SERVER_IP} {DATA_PORT}"
    rss_start = daemon_rss_kb(vpn)
    sh(vpn.lab, ATTACKER, f"{flood} 20000 5000 {alice['session']} {captured.hex()}")  # warm-up: the allocator
    sh(vpn.lab, ATTACKER, f"python3 /root/attack/junk.py {SERVER_IP} {CONTROL_PORT} 30 0.06", timeout=60)  # and OpenSSL
    time.sleep(1)
    before, rss_before, pid = server_status(vpn), daemon_rss_kb(vpn), daemon_pid(vpn)
    start_capture(vpn, "attack-cap", "/tmp/silence.pcap", f"src host {SERVER_IP} and dst host {ATTACKER_IP}")
    flood_out, junk_out, ping_out = parallel(
        lambda: sh(vpn.lab, ATTACKER, f"{flood} 100000 5000 {alice['session']} {captured.hex()}", timeout=90),
        lambda: sh(vpn.lab, ATTACKER, f"python3 /root/attack/junk.py {SERVER_IP} {CONTROL_PORT} 40 0.3", timeout=90),
        lambda: sh(vpn.lab, "laptop", "ping -q -i 0.05 -c 400 -W 1 10.8.0.1", check=False, timeout=90),
    )
    stop_capture(vpn, "attack-cap")
    time.sleep(1)
    after, rss_after = server_status(vpn), daemon_rss_kb(vpn)
    sent, junk = json.loads(flood_out.stdout), json.loads(junk_out.stdout)
    answers = sh(vpn.lab, S, "tcpdump -nn -r /tmp/silence.pcap 'udp or icmp' 2>/dev/null").stdout.splitlines()
    control = sh(vpn.lab, S, "tcpdump -nn -r /tmp/silence.pcap 'tcp' 2>/dev/null").stdout.splitlines()
    kernel_drops = sh(vpn.lab, S, "awk '/^Udp:/ {print $0}' /proc/net/snmp").stdout
    grown = {k: after["drops"].get(k, 0) - before["drops"].get(k, 0) for k in after["drops"]}
    total_sent = sum(sent["sent"].values())
    report({"flood": sent, "rate_per_s": round(total_sent / sent["seconds"]), "drops_grown": grown,
            "rss_kb": [rss_start, rss_before, rss_after], "ping": ping_out.stdout.strip().splitlines()[-2:],
            "control_junk": junk, "tcp_packets_back": len(control), "udp_snmp": kernel_drops})
    same_daemon(vpn, pid)
    assert total_sent == 100_000 and sent["seconds"] < 30
    assert answers == [] and sent["answer_bytes"] == 0  # not one datagram or ICMP error back
    assert junk["reply_bytes"] == 0  # not even a TLS alert for junk
    assert [(c["name"], c["session"], c["endpoint"]) for c in after["clients"]] == \
           [("alice", alice["session"], alice["endpoint"])]
    assert sum(grown.values()) >= 0.9 * total_sent, grown
    assert grown.get("replay", 0) >= 0.9 * sent["sent"]["replayed"]
    assert grown.get("auth", 0) + grown.get("bad-type", 0) >= 0.9 * sent["sent"]["wrong-key"]
    assert rss_after - rss_before < 2048, (rss_start, rss_before, rss_after)
    assert ping_loss(ping_out.stdout) <= 2.0, ping_out.stdout


def test_junk_to_the_control_port_gets_not_one_byte_back(vpn):
    junk = json.loads(sh(vpn.lab, ATTACKER, f"python3 /root/attack/junk.py {SERVER_IP} {CONTROL_PORT} 10 0.1",
                         timeout=60).stdout)
    report({"control_junk": junk})
    assert junk["reply_bytes"] == 0, junk


# -- 2. handshake flood --------------------------------------------------------------------

def self_signed_client(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mallory")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return write_pair(directory, "mallory", cert, key)


def write_pair(directory: Path, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    c, k = directory / f"{name}.crt", directory / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def give_pair(vpn, host: str, pair: tuple[Path, Path]) -> tuple[str, str]:
    paths = (f"/root/certs/{pair[0].name}", f"/root/certs/{pair[1].name}")
    put(vpn.lab, host, paths[0], pair[0].read_bytes())
    put(vpn.lab, host, paths[1], pair[1].read_bytes(), 0o600)
    return paths


def timed_up(vpn, delay: float) -> tuple[float, str]:
    time.sleep(delay)
    t0 = time.monotonic()
    path = vpn.give("laptop", vpn.bundle("alice"))
    proc = sh(vpn.lab, "laptop", f"vpn-runtime up {path} {SPLIT} && ping -c2 -W1 10.8.0.1", check=False, timeout=60)
    took = time.monotonic() - t0
    sh(vpn.lab, "laptop", "vpn-runtime down", check=False)
    return took, proc.stdout + proc.stderr if proc.returncode else "ok"


def test_a_handshake_flood_is_rate_limited_and_a_real_client_still_connects(vpn, tmp_path):
    cert, key = give_pair(vpn, ATTACKER, self_signed_client(tmp_path))
    before, cursor, pid = server_status(vpn)["drops"], journal_cursor(vpn), daemon_pid(vpn)
    seconds = 20
    flood_out, (took, up_result) = parallel(
        lambda: sh(vpn.lab, ATTACKER, f"python3 /root/attack/hsflood.py {SERVER_IP} {CONTROL_PORT} {seconds} 100 "
                                      f"{cert} {key}", timeout=120),
        lambda: timed_up(vpn, 5.0),
    )
    flood = json.loads(flood_out.stdout)
    drops = server_status(vpn)["drops"]
    refused = {k: drops.get(k, 0) - before.get(k, 0) for k in drops if k.startswith("connect-")}
    lines = [ln for ln in journal_since(vpn, cursor) if ATTACKER_IP in ln]
    limit_lines = [ln for ln in lines if "control connections from" in ln]
    report({"flood": flood, "refused": refused, "legit_up_seconds": round(took, 2),
            "log_lines_about_attacker": len(lines), "rate_limit_log_lines": limit_lines})
    same_daemon(vpn, pid)
    assert up_result == "ok", up_result
    assert took < 15
    admitted = flood["attempts"] - sum(refused.values())
    assert refused.get("connect-rate", 0) > 0 and refused.get("connect-pending-source", 0) > 0, refused
    assert admitted <= 5 + 20 * flood["seconds"] + 5, (admitted, flood)
    assert flood["refused-at-once"] >= sum(refused.values()) - 5
    assert 1 <= len(limit_lines) <= flood["seconds"] / 10 + 2, limit_lines
    assert all(re.search(r"refused: over the (rate|pending-source) limit", ln) for ln in limit_lines)
    assert len(lines) < flood["attempts"] / 2  # not one line per attempt


# -- 3. mTLS negatives ---------------------------------------------------------------------

def client_cert(vpn, name: str, *, eku=ExtendedKeyUsageOID.CLIENT_AUTH, days=(-1, 30), ca=None):
    """A certificate for `name` signed by `ca` (ours by default), made directly."""
    ca = ca or vpn.ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return cert, key


def bundle_of(vpn, name: str, cert, key, *, ca_pem: str | None = None, server_name: str = f"{S}.vpn",
              pin: str | None = None) -> Bundle:
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    base = vpn.bundle("alice").servers[0]
    server = ServerEndpoint(server_name, base.host, base.port, base.data_port, pin or base.pin)
    now = datetime.now(timezone.utc)
    return Bundle(name, now - timedelta(days=2), now + timedelta(days=30), (server,), ca_pem or vpn.ca_pem(),
                  pem, key_pem)


def try_up(vpn, bundle: Bundle, *, written_at: datetime | None = None) -> tuple[int, list[str], list[str]]:
    """`vpn-runtime up` on the attacker's laptop: exit code, stderr lines, server log lines about it."""
    local = Path(f"/tmp/attack-{bundle.name}.bundle")
    local.unlink(missing_ok=True)
    write_bundle(local, bundle, now=written_at)
    put(vpn.lab, ATTACKER, "/root/neg.bundle", local.read_bytes(), 0o600)
    local.unlink()
    cursor = journal_cursor(vpn)
    proc = sh(vpn.lab, ATTACKER, "vpn-runtime up /root/neg.bundle", check=False, timeout=60)
    sh(vpn.lab, ATTACKER, "vpn-runtime down", check=False)
    time.sleep(0.5)
    logged = [ln for ln in journal_since(vpn, cursor) if ATTACKER_IP in ln]
    return proc.returncode, proc.stderr.strip().splitlines(), logged


def raw_tls(vpn, cert, key, name: str) -> tuple[str, list[str]]:
    """A raw TLS client on the attacker presenting `cert`: its outcome, server log lines."""
    with_pair = give_pair(vpn, ATTACKER, write_pair(Path("/tmp"), f"attack-{name}", cert, key))
    cursor = journal_cursor(vpn)
    out = sh(vpn.lab, ATTACKER, f"python3 /root/attack/tlsclient.py {SERVER_IP} {CONTROL_PORT} {with_pair[0]} "
                                f"{with_pair[1]}", timeout=30).stdout
    time.sleep(0.5)
    return out.strip(), [ln for ln in journal_since(vpn, cursor) if ATTACKER_IP in ln]


def refused_once(logged: list[str], reason: str) -> bool:
    return len(logged) == 1 and re.search(rf"handshake refused from {ATTACKER_IP}:\d+: {reason}$", logged[0]) is not None


def assert_client_refused(code: int, err: list[str], reason: str) -> None:
    assert code == 8 and len(err) == 1 and "refused" in err[0] and reason in err[0], (code, err)


SERVER_REFUSES = [
    pytest.param("wrong-eku", dict(eku=ExtendedKeyUsageOID.SERVER_AUTH), id="server-cert-as-client"),
    pytest.param("not-yet-valid", dict(days=(1, 30)), id="not-yet-valid"),
]


@pytest.mark.parametrize(("reason", "make"), SERVER_REFUSES)
def test_the_server_refuses_a_bad_client_certificate_end_to_end(vpn, reason, make):
    cert, key = client_cert(vpn, f"neg-{reason}", **make)
    code, err, logged = try_up(vpn, bundle_of(vpn, f"neg-{reason}", cert, key))
    report({"case": reason, "exit": code, "stderr": err, "server_log": logged})
    assert refused_once(logged, reason), logged
    assert code != 0 and len(err) == 1 and "certificate" in err[0], (code, err)  # the TLS alert is named


@pytest.mark.parametrize(("reason", "make"), SERVER_REFUSES)
def test_a_client_whose_certificate_the_server_refuses_exits_with_code_8(vpn, reason, make):
    cert, key = client_cert(vpn, f"neg8-{reason}", **make)
    code, err, _ = try_up(vpn, bundle_of(vpn, f"neg8-{reason}", cert, key))
    assert_client_refused(code, err, "certificate")


def test_a_revoked_client_is_refused_and_the_server_logs_it_once(vpn):
    cert, key = pki.issue_client(vpn.ca, "neg-revoked")
    put(vpn.lab, S, f"{CONF}/crl.pem", pki.revoke(vpn.ca, "neg-revoked"))
    sh(vpn.lab, S, "vpn-runtime reload")
    key_obj = serialization.load_pem_private_key(key.encode(), None)
    code, err, logged = try_up(vpn, bundle_of(vpn, "neg-revoked", x509.load_pem_x509_certificate(cert.encode()),
                                              key_obj))
    report({"case": "revoked", "exit": code, "stderr": err, "server_log": logged})
    assert refused_once(logged, "revoked"), logged
    assert_client_refused(code, err, "revoked")


CLIENT_REFUSES = [
    pytest.param("wrong-name", dict(server_name="other.vpn"), id="wrong-server-name"),
    pytest.param("wrong-pin", dict(pin="ab" * 32), id="wrong-pin"),
    pytest.param("foreign-ca", dict(foreign=True), id="foreign-ca"),
]


@pytest.mark.parametrize(("reason", "how"), CLIENT_REFUSES)
def test_the_client_refuses_a_server_it_was_not_given(vpn, tmp_path, reason, how):
    if how.pop("foreign", False):
        other = pki.init_ca(tmp_path / "other")
        cert, key = client_cert(vpn, "neg-foreign", ca=other)
        bundle = bundle_of(vpn, "neg-foreign", cert, key, ca_pem=other.cert_pem)
    else:
        cert, key = client_cert(vpn, f"neg-{reason}")
        bundle = bundle_of(vpn, f"neg-{reason}", cert, key, **how)
    code, err, logged = try_up(vpn, bundle)
    report({"case": reason, "exit": code, "stderr": err, "server_log": logged})
    assert_client_refused(code, err, reason)
    assert len(logged) <= 1 and all("handshake refused" in ln for ln in logged), logged


def test_an_expired_bundle_is_refused_before_connecting(vpn):
    cert, key = client_cert(vpn, "neg-expired", days=(-30, -1))
    code, err, logged = try_up(vpn, bundle_of(vpn, "neg-expired", cert, key),
                               written_at=datetime.now(timezone.utc) - timedelta(days=2))
    report({"case": "expired bundle", "exit": code, "stderr": err, "server_log": logged})
    assert code == 3 and len(err) == 1 and "expired on" in err[0], (code, err)
    assert logged == []  # it never reached the server


@pytest.mark.parametrize(("reason", "make"), [
    pytest.param("expired", dict(days=(-30, -1)), id="expired"),
    pytest.param("not-yet-valid", dict(days=(1, 30)), id="not-yet-valid"),
    pytest.param("wrong-eku", dict(eku=ExtendedKeyUsageOID.SERVER_AUTH), id="server-cert-as-client"),
    pytest.param("foreign-ca", dict(foreign=True), id="foreign-ca"),
])
def test_the_server_refuses_a_raw_tls_client_and_logs_the_reason_once(vpn, tmp_path, reason, make):
    if make.pop("foreign", False):
        make["ca"] = pki.init_ca(tmp_path / "other")
    cert, key = client_cert(vpn, f"raw-{reason}", **make)
    outcome, logged = raw_tls(vpn, cert, key, reason)
    report({"case": f"raw {reason}", "client": outcome, "server_log": logged})
    assert outcome.startswith("refused"), outcome
    assert refused_once(logged, reason), logged


# -- 4. replay -----------------------------------------------------------------------------

def test_a_replayed_data_datagram_is_dropped_from_any_address_and_moves_nothing(vpn, alice):
    src, sport, datagram = capture_data_datagram(vpn)
    time.sleep(0.5)
    before = server_status(vpn)
    sh(vpn.lab, "laptop", f"python3 /root/attack/rawreplay.py {src} {sport} {SERVER_IP} {DATA_PORT} {FWMARK} 5 "
                          f"{datagram.hex()}")
    sh(vpn.lab, ATTACKER, f"python3 /root/attack/replay.py {SERVER_IP} {DATA_PORT} 5 {datagram.hex()}")
    time.sleep(0.5)
    after = server_status(vpn)
    grown = {k: after["drops"].get(k, 0) - before["drops"].get(k, 0) for k in after["drops"]}
    keep = ("session", "endpoint", "rx_packets", "rx_bytes", "key_epoch")
    report({"replayed_from": [f"{src}:{sport}", ATTACKER_IP], "drops_grown": grown})
    assert grown.get("replay", 0) == 10, grown
    assert [{k: c[k] for k in keep} for c in after["clients"]] == [{k: c[k] for k in keep} for c in before["clients"]]
    assert before["clients"][0]["endpoint"] == f"{src}:{sport}"
    assert sh(vpn.lab, "laptop", "ping -c2 -W1 10.8.0.1", check=False).returncode == 0
