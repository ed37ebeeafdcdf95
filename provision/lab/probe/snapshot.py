"""Print a canonical, diffable picture of this host's state (runs inside the host).

Sections: nft ruleset, net.* sysctls, links and addresses, routes, rules, listening
sockets, enabled units, running services, installed packages, and a listing of
/etc, /opt, /usr/local and /var/lib with a SHA-256 per file, the target per link and
the mode and owner of everything.

Rule: the same state prints the same bytes (sorted, no timestamps, no counters, no PIDs),
and files that change by themselves are left out (VOLATILE).
"""

import hashlib
import json
import os
import stat
import subprocess

TREES = ("/etc", "/opt", "/usr/local", "/var/lib")
VOLATILE = (
    "/var/lib/apt/", "/var/lib/dpkg/", "/var/lib/systemd/random-seed", "/var/lib/systemd/timers/",
    "/var/lib/systemd/catalog/", "/var/lib/systemd/coredump/", "/var/lib/sudo/", "/etc/ld.so.cache",
    "/var/lib/private/systemd/", "/var/lib/systemd/deb-systemd-user-helper-enabled/",
)
VOLATILE_SYSCTL = ("net.netfilter.nf_conntrack_count", "net.ipv6.conf.all.stable_secret")
ROUTE_KEYS = ("type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric", "table", "flags", "pref", "mtu")


def sh(*argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else f"({argv[0]} failed: {p.stderr.strip()})\n"


def jsh(*argv):
    try:
        return json.loads(sh(*argv) or "[]")
    except ValueError:
        return []


def section(title, lines):
    print(f"## {title}")
    for line in lines:
        print(line)
    print()


def sysctls():
    out = []
    for dirpath, _, files in os.walk("/proc/sys/net"):
        for f in files:
            path = os.path.join(dirpath, f)
            key = path[len("/proc/sys/"):].replace("/", ".")
            if key in VOLATILE_SYSCTL or key.endswith(".stable_secret"):
                continue
            try:
                with open(path) as fh:
                    value = " ".join(fh.read().split())
            except OSError:
                continue
            out.append(f"{key} = {value}")
    return sorted(out)


def addresses():
    out = []
    for link in jsh("ip", "-j", "addr", "show"):
        flags = ",".join(sorted(link.get("flags", [])))
        out.append(f"{link['ifname']} mtu={link.get('mtu')} state={link.get('operstate')} flags={flags}")
        for a in link.get("addr_info", []):
            out.append(f"  {a.get('family')} {a.get('local')}/{a.get('prefixlen')} scope={a.get('scope')}")
    return out


def routes():
    out = []
    for fam in ("-4", "-6"):
        for r in jsh("ip", "-j", fam, "route", "show", "table", "all"):
            out.append(fam + " " + " ".join(f"{k}={r[k]}" for k in ROUTE_KEYS if k in r))
    return sorted(out)


def rules():
    out = []
    for fam in ("-4", "-6"):
        for r in jsh("ip", "-j", fam, "rule", "show"):
            out.append(fam + " " + json.dumps(r, sort_keys=True))
    return out


def listening():
    lines = sh("ss", "-H", "-l", "-n", "-t", "-u", "-w").splitlines()
    return sorted({" ".join((f[0], f[4])) for f in (l.split() for l in lines) if len(f) >= 5})


def units():
    text = sh("systemctl", "list-unit-files", "--state=enabled", "--no-legend", "--no-pager")
    return sorted(l.split()[0] for l in text.splitlines() if l.strip())


def services():
    text = sh("systemctl", "list-units", "--type=service", "--state=running", "--no-legend", "--no-pager", "--plain")
    return sorted(l.split()[0] for l in text.splitlines() if l.strip())


def packages():
    text = sh("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n")
    return sorted(l[4:] for l in text.splitlines() if l.startswith("ii "))


def volatile(path):
    return any(path == v.rstrip("/") or path.startswith(v) for v in VOLATILE)


def describe(path):
    st = os.lstat(path)
    who = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}"
    if stat.S_ISLNK(st.st_mode):
        return f"{who} {path} -> {os.readlink(path)}"
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                h.update(chunk)
        return f"{who} {path} {h.hexdigest()}"
    return f"{who} {path}"


def files():
    out = []
    for top in TREES:
        for dirpath, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if not volatile(os.path.join(dirpath, d) + "/")]
            for n in dirs + names:
                path = os.path.join(dirpath, n)
                if not volatile(path):
                    out.append(describe(path))
    return sorted(out, key=lambda l: l.split(" ", 2)[2])


def main():
    section("nft ruleset", sh("nft", "list", "ruleset").splitlines())
    section("sysctl net.*", sysctls())
    section("links and addresses", addresses())
    section("routes", routes())
    section("rules", rules())
    section("listening sockets", listening())
    section("enabled units", units())
    section("running services", services())
    section("packages", packages())
    section("files", files())


main()
