"""The lab's Debian 12 image: built once, cached outside the repository by recipe hash.

Layout of one cached image (`CACHE_DIR/image-<hash>/`):
  rootfs/    the base every host boots from (minbase + systemd + sshd + python3 + tools)
  internet/  an overlay layer on rootfs for the `internet` host (dnsmasq, web server)
  mirror/    a flat Debian repository holding what a deploy installs (served by `internet`)
  ready      written last: an image without it is unfinished and is rebuilt

Rule 1: the hash covers everything that shapes the image (packages, files, this recipe's
version), so a change of recipe rebuilds and an unchanged one is reused as is.
Rule 2: the VPS hosts start without the packages a deploy installs; those live only in
the mirror, so deploy's install and teardown's removal are real.
Rule 3: builds happen in a temporary folder renamed into place at the end; a crashed
build leaves nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator

from provision.lab import local
from provision.lab.topology import MIRROR_URL

RECIPE_VERSION = "4"
CACHE_DIR = Path(os.environ.get("VPNLAB_CACHE", "/var/cache/vpnlab"))
SUITE = "bookworm"
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-venv",
    "nftables", "iproute2", "sudo", "curl", "bind9-dnsutils", "iperf3", "tcpdump",
    "procps", "iputils-ping", "ca-certificates", "netcat-openbsd", "kmod",
)
# What a deploy installs beyond the base image: served from the lab's mirror only.
MIRROR_PACKAGES = ("unbound",)
INTERNET_PACKAGES = ("dnsmasq-base",)
FILES = Path(__file__).parent / "files"
ADMIN_USER = "admin"


def recipe_hash() -> str:
    h = hashlib.sha256()
    for part in (RECIPE_VERSION, SUITE, *BASE_PACKAGES, "|", *MIRROR_PACKAGES, "|", *INTERNET_PACKAGES):
        h.update(part.encode() + b"\0")
    for f in sorted(FILES.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:16]


def bootstrap_hash() -> str:
    return hashlib.sha256(" ".join((SUITE, *BASE_PACKAGES)).encode()).hexdigest()[:16]


def image_dir() -> Path:
    return CACHE_DIR / f"image-{recipe_hash()}"


def is_built() -> bool:
    return (image_dir() / "ready").exists()


def ensure_image(log=print) -> Path:
    """Return the cached image, building it first if its recipe changed."""
    local.require_root()
    final = image_dir()
    if (final / "ready").exists():
        return final
    _remove_stale_builds()
    boot = _ensure_bootstrap(log)
    tmp = CACHE_DIR / f"{final.name}.tmp-{os.getpid()}"
    log(f"lab: building the host image in {final} (once per recipe)")
    tmp.mkdir(parents=True)
    local.run(["cp", "-a", "--reflink=auto", str(boot), str(tmp / "rootfs")])
    _nspawn_build(tmp / "rootfs", "apt-get update -qq")
    _build_mirror(tmp, log)
    _build_internet_layer(tmp)
    _finish_base(tmp / "rootfs")
    (tmp / "ready").write_text(recipe_hash() + "\n")
    tmp.rename(final)
    return final


def _remove_stale_builds() -> None:
    if not CACHE_DIR.exists():
        return
    for p in CACHE_DIR.iterdir():
        if ".tmp-" in p.name:
            _umount_below(p)
            shutil.rmtree(p, ignore_errors=True)


def _ensure_bootstrap(log) -> Path:
    """debootstrap output, cached by its package list (the slow part: about a minute)."""
    boot = CACHE_DIR / f"bootstrap-{bootstrap_hash()}"
    if boot.exists():
        return boot
    tmp = CACHE_DIR / f"{boot.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    log("lab: debootstrap of Debian 12 (about a minute, once)")
    local.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
               SUITE, str(tmp)], timeout=1800)
    tmp.rename(boot)
    return boot


def _nspawn_build(root: Path, script: str) -> None:
    """Run a build step inside `root` (a container sharing this machine's network, which
    it only uses to download from Debian; it changes nothing of this machine's network)."""
    local.run(["systemd-nspawn", "-q", "--register=no", "--keep-unit", "--resolv-conf=copy-host",
               "--timezone=off", "-D", str(root), "sh", "-ec", script], timeout=1800)


@contextmanager
def _overlay(lower: Path, upper: Path) -> Iterator[Path]:
    work, merged = upper.parent / (upper.name + ".work"), upper.parent / (upper.name + ".merged")
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    local.run(["mount", "-t", "overlay", "overlay", "-o",
               f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)])
    try:
        yield merged
    finally:
        local.run(["umount", str(merged)])
        shutil.rmtree(work, ignore_errors=True)
        merged.rmdir()


def _build_mirror(tmp: Path, log) -> None:
    """Download what a deploy installs (with dependencies the base lacks) and index it."""
    log("lab: filling the lab's Debian mirror: " + ", ".join(MIRROR_PACKAGES))
    mirror = tmp / "mirror"
    mirror.mkdir()
    with _overlay(tmp / "rootfs", tmp / "scratch") as root:
        _nspawn_build(root, "rm -f /var/cache/apt/archives/*.deb; "
                      "apt-get install -qq -y --download-only " + " ".join(MIRROR_PACKAGES))
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            shutil.copy2(deb, mirror / deb.name)
    shutil.rmtree(tmp / "scratch")
    index = local.run(["dpkg-scanpackages", "--multiversion", "."], cwd=mirror).stdout
    (mirror / "Packages").write_bytes(index)
    local.run(["gzip", "-kf", str(mirror / "Packages")])


def _build_internet_layer(tmp: Path) -> None:
    with _overlay(tmp / "rootfs", tmp / "internet") as root:
        _nspawn_build(root, "apt-get install -qq -y --no-install-recommends " + " ".join(INTERNET_PACKAGES))
        _put(root, "usr/local/lib/vpnlab/web.py", (FILES / "web.py").read_text())
        _put(root, "etc/vpnlab/dnsmasq.conf", (FILES / "dnsmasq.conf").read_text())
        for unit in ("lab-web.service", "lab-dns.service"):
            _put(root, f"etc/systemd/system/{unit}", (FILES / unit).read_text())
            _link(root, f"etc/systemd/system/multi-user.target.wants/{unit}", f"/etc/systemd/system/{unit}")
        (root / "srv/mirror").mkdir(parents=True, exist_ok=True)


def _finish_base(root: Path) -> None:
    """What makes the base a fresh VPS of the lab: apt pointed at the lab mirror (and no
    package lists yet), no shared host keys, no background timers, an ordinary sudo user."""
    _nspawn_build(root, f"useradd -m -s /bin/bash -G sudo {ADMIN_USER}")
    _put(root, "etc/apt/sources.list", f"deb [trusted=yes] {MIRROR_URL} ./\n")
    _put(root, "etc/resolv.conf", "nameserver 203.0.113.53\n")
    _put(root, "etc/machine-id", "")
    for lists in (root / "var/lib/apt/lists").glob("*"):
        if lists.is_file():
            lists.unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    for timer in (root / "etc/systemd/system/timers.target.wants").glob("*"):
        timer.unlink()
    local.run(["rm", "-rf", str(root / "var/cache/apt/archives"), str(root / "var/log/apt")])
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def _put(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _link(root: Path, rel: str, target: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _umount_below(folder: Path) -> None:
    for mnt in mounts_below(folder):
        local.run(["umount", "-l", mnt], check=False)


def mounts_below(folder: Path) -> list[str]:
    """Mount points at or below `folder`, deepest first."""
    prefix = str(folder.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)
