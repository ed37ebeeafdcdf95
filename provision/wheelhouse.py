"""The runtime as a folder of wheels, so a host installs it with no package registry.

The runtime is shipped alone (a wheel `selfvpn-runtime` holding only `runtime/`), with
the wheels of its dependencies for the host's Python, fetched once on the operator's
side and cached by content.

Rule 1: the cache key covers the runtime's source and the target Python, so a change to
the runtime ships a new wheel and an unchanged one is reused.
Rule 2: hosts install with `pip --no-index --find-links`: they never reach a registry.
Rule 3: the native data path (runtime/_fast*.so, built by setup.py for the operator's Python)
        ships inside the wheel as it is: a host's CPython loads it only if its name's ABI tag
        matches (same version, architecture and libc), and runtime/fast.py falls back to the
        pure-Python path on any ImportError (an older glibc, no libcrypto.so.3).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from provision.errors import ProvisionError

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime"
CACHE = Path(os.environ.get("SELFVPN_CACHE", Path.home() / ".cache" / "selfvpn")) / "wheels"
DEPENDENCIES = ("cryptography>=42", "pyyaml>=6", "uvloop>=0.19")
DIST = "selfvpn-runtime"
PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "{version}"
requires-python = ">=3.9"
dependencies = {deps}

[project.scripts]
vpn-runtime = "runtime.cli:main"

[tool.setuptools.packages.find]
include = ["runtime*"]

[tool.setuptools.package-data]
runtime = ["*.so"]
"""


class WheelhouseError(ProvisionError):
    exit_code = 9
    default_hint = "the operator's machine needs PyPI access once to fetch the runtime's dependencies"


def shipped_apart(f: Path) -> bool:
    """Files of runtime/ the wheel leaves out: bytecode and the C sources.  The native data
    path's modules go as built here (Rule 3)."""
    return "__pycache__" in f.parts or "native" in f.relative_to(RUNTIME).parts


def source_hash() -> str:
    h = hashlib.sha256("|".join(DEPENDENCIES).encode())
    for f in sorted(RUNTIME.rglob("*")):
        if f.is_file() and not shipped_apart(f):
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def version() -> str:
    from runtime import __version__

    return f"{__version__}+{source_hash()}"


def ensure(python: str = "3.11") -> Path:
    """The wheel folder for hosts running CPython `python` (x86_64 Linux)."""
    folder = CACHE / f"py{python}-{source_hash()}"
    if (folder / "ready").exists():
        return folder
    with open(_mkdir(CACHE) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time, across processes
        if not (folder / "ready").exists():
            _build(folder, python)
    return folder


def _build(folder: Path, python: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=CACHE))
    try:
        _build_runtime_wheel(tmp)
        _download_dependencies(tmp, python)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / "ready").write_text(version() + "\n")
    for old in CACHE.glob(f"py{python}-*"):
        if old != tmp:
            shutil.rmtree(old, ignore_errors=True)
    tmp.rename(folder)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _build_runtime_wheel(out: Path) -> None:
    with tempfile.TemporaryDirectory() as src:
        shutil.copytree(RUNTIME, Path(src) / "runtime", ignore=shutil.ignore_patterns("__pycache__", "native"))
        deps = "[" + ", ".join(f'"{d}"' for d in DEPENDENCIES) + "]"
        (Path(src) / "pyproject.toml").write_text(PYPROJECT.format(dist=DIST, version=version(), deps=deps))
        _pip("wheel", "--no-deps", "-q", "-w", str(out), src)


def _download_dependencies(out: Path, python: str) -> None:
    abi = "cp" + python.replace(".", "")
    _pip("download", "-q", "-d", str(out), "--only-binary=:all:", "--python-version", python,
         "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
         "--platform", "manylinux_2_17_x86_64", "--platform", "any", *DEPENDENCIES)


def _pip(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise WheelhouseError(f"wheelhouse: pip {args[0]} failed: {last}")


INSTALL_DIR = "/opt/vpn-runtime"


def install_script(wheel_dir: str, wanted: str | None = None) -> str:
    """Shell run on the host: a venv of its own, installed from the shipped wheels only, at
    exactly version `wanted` (default: this source's), so a build that sorts lower than the
    installed one still replaces it."""
    return (f"set -e; python3 -m venv {INSTALL_DIR}; "
            f"{INSTALL_DIR}/bin/pip install -q --no-index --find-links {wheel_dir} --upgrade "
            f"'{DIST}=={wanted or version()}'; "
            f"ln -sf {INSTALL_DIR}/bin/vpn-runtime /usr/local/bin/vpn-runtime")
