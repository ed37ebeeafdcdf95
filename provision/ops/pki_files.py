"""`server_cert`, `ca_cert`, `crl`: what the server needs from our CA, and nothing more.

Rule 1: the server's key is made ON the server (`vpn-runtime csr`, which keeps a key that
exists); only its CSR comes to us, and only the certificate goes back.  The CA key stays
on the operator's side (it is in `Context.ca`, never in an action's data).
Rule 2: a certificate is left alone while it is ours (signed by this CA), matches the
host's key, names the server, and is not within `RENEW_BEFORE` of its expiry;
otherwise it is signed anew (same key, so bundles' pins stay valid).
Rule 3: signing and CRL renewal change the operator's PKI folder, so they happen only
when the plan is applied (`Exchange`), never under `--check`.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from provision import pki
from provision.connection import Remote
from provision.fact import gather
from provision.journal import TEMP_SUFFIX, undo
from provision.operation import Change, Context, Exchange, NoChange, Operation, OperationFailed, Outcome, Run
from provision.ops.file import FileOp, FileState, check_path, file_fact
from provision.ops.runtime import BINARY
from provision.pki.ca import public_der
from runtime.validate import HOSTNAME

q = shlex.quote


def need_ca(ctx: Context) -> pki.Ca:
    if ctx.ca is None:
        raise OperationFailed("this step needs the operator's CA, and the run was started without one")
    return ctx.ca


# ---- the certificate: a pure judgement ----------------------------------------------------


def cert_problem(pem: bytes, ca: x509.Certificate, key_public: bytes | None,
                 names: tuple[str, ...], now: datetime) -> str | None:
    """Why the certificate on the host must be signed anew, or None when it is good."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return "the file is not a PEM certificate"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by this CA"
    if key_public is not None and public_der(cert.public_key()) != key_public:
        return "does not match the host's key"
    missing = [n for n in names if n not in cert_names(cert)]
    if missing:
        return f"does not name {', '.join(missing)}"
    if pki.due(cert.not_valid_after_utc, now, pki.RENEW_BEFORE):
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None


def cert_names(cert: x509.Certificate) -> set[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*sans.get_values_for_type(x509.DNSName), *map(str, sans.get_values_for_type(x509.IPAddress))}


def csr_public(csr_pem: str) -> bytes | None:
    try:
        return public_der(x509.load_pem_x509_csr(csr_pem.encode()).public_key())
    except ValueError:
        return None


@dataclass(frozen=True)
class CertState:
    key: FileState
    cert: FileState
    key_public: bytes | None
    now: datetime


@dataclass(frozen=True)
class ServerCertOp(Operation[CertState]):
    """The server's key (made on the host) and its certificate from our CA."""

    op = "server_cert"
    name: str
    sans: tuple[str, ...] = ()
    key: str = "/etc/vpn-runtime/server.key"
    cert: str = "/etc/vpn-runtime/server.crt"

    def validate(self) -> None:
        check_path(self.key)
        check_path(self.cert)
        for san in self.sans:
            try:
                ipaddress.ip_address(san)
            except ValueError:
                if not HOSTNAME.fullmatch(san):
                    raise ValueError(f"sans: {san!r} is neither an IP address nor a DNS name") from None

    def gather(self, remote: Remote, ctx: Context) -> CertState:
        key = gather(remote, file_fact(self.key))
        public = None
        if key.kind == "file":  # `csr` with an existing key only reads it
            result = remote.run(self.csr_command(), check=False)
            public = csr_public(result.stdout) if result.rc == 0 else None
        return CertState(key, gather(remote, file_fact(self.cert)), public, pki.utcnow())

    def csr_command(self) -> str:
        return f"{BINARY} csr --key {q(self.key)} --name {q(self.name)}"

    def decide(self, state: CertState, ctx: Context) -> Outcome:
        ca = need_ca(ctx)
        if state.cert.kind not in ("absent", "file") or state.key.kind not in ("absent", "file"):
            raise OperationFailed(f"{self.cert} or {self.key} is not a regular file")
        names = (self.name, *self.sans)
        problem = "no certificate yet" if state.cert.kind == "absent" else cert_problem(
            state.cert.content, ca.cert, state.key_public, names, state.now)
        if problem is None:
            return NoChange(f"certificate for {self.name} is good")
        return self._issue(problem, state, ctx, ca)

    def _issue(self, problem: str, state: CertState, ctx: Context, ca: pki.Ca) -> Change:
        name, sans = self.name, self.sans
        records, keep = [], []
        if state.key.kind == "absent":
            records.append(undo("file_created", path=self.key))
        if state.cert.kind == "absent":
            records.append(undo("file_created", path=self.cert))
        else:
            backup = ctx.state.backup_for(self.cert, state.cert.content)
            keep.append(Run(f"umask 077 && mkdir -p {q(backup.rsplit('/', 1)[0])} && cp -p {q(self.cert)} {q(backup)}"))
            records.append(undo("file_replaced", path=self.cert, backup=backup))
        sign = Exchange(f"make the key on the host if missing, sign its CSR here with the CA as {name}",
                        self.cert + TEMP_SUFFIX, lambda csr: pki.sign_server_csr(ca, csr, name, sans).encode(),
                        self.csr_command(), 0o644)
        diff = f"--- before: {self.cert}\n+++ after: {self.cert}\n-({problem})\n+(certificate for {name})\n"
        actions = (*keep, sign, Run(f"mv -f {q(self.cert + TEMP_SUFFIX)} {q(self.cert)}"))
        return Change(f"issue the server certificate: {problem}", actions, tuple(records), diff)


# ---- the CA certificate and the CRL --------------------------------------------------------


@dataclass(frozen=True)
class CaCertOp(Operation[FileState]):
    """The CA's certificate (public) at `path`."""

    op = "ca_cert"
    path: str = "/etc/vpn-runtime/ca.crt"

    def validate(self) -> None:
        check_path(self.path)

    def gather(self, remote: Remote, ctx: Context) -> FileState:
        return gather(remote, file_fact(self.path))

    def decide(self, state: FileState, ctx: Context) -> Outcome:
        return FileOp(self.path, need_ca(ctx).cert_pem, "0644").decide(state, ctx)


@dataclass(frozen=True)
class CrlState:
    host: FileState
    current: str
    renew: str | None


@dataclass(frozen=True)
class CrlOp(Operation[CrlState]):
    """The CA's current CRL at `path`, renewed here first when it is close to lapsing."""

    op = "crl"
    path: str = "/etc/vpn-runtime/crl.pem"

    def validate(self) -> None:
        check_path(self.path)

    def gather(self, remote: Remote, ctx: Context) -> CrlState:
        ca = need_ca(ctx)
        reason = pki.crl_renewal_reason(ca, pki.load_roster(ca.directory), pki.utcnow())
        current = "" if reason else (ca.directory / "crl.pem").read_text()
        return CrlState(gather(remote, file_fact(self.path)), current, reason)

    def decide(self, state: CrlState, ctx: Context) -> Outcome:
        ca = need_ca(ctx)
        if state.renew is None:
            return FileOp(self.path, state.current, "0644").decide(state.host, ctx)
        plan = FileOp(self.path, "(the renewed CRL)\n", "0644").decide(state.host, ctx)
        assert isinstance(plan, Change)  # that placeholder is never what is there
        put = Exchange(f"renew the CRL here ({state.renew})", self.path + TEMP_SUFFIX,
                       lambda _: pki.crl(ca).encode(), "", 0o644)
        actions = tuple(put if getattr(a, "path", "") == self.path + TEMP_SUFFIX else a for a in plan.actions)
        return Change(f"renew and install the CRL: {state.renew}", actions, plan.undo,
                      f"--- before: {self.path}\n+++ after: {self.path}\n+(a new CRL: {state.renew})\n")
