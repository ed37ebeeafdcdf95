"""Data-channel keys: ephemeral X25519 per epoch, HKDF-SHA256 to one key per direction.

Rule 1: every epoch uses a fresh X25519 key pair on both sides (forward secrecy); private
        keys live only in an `Ephemeral` and are dropped after the exchange.
Rule 2: the derivation binds the label, session id, epoch and both public keys, so a key
        can never serve another session, epoch or direction.
Rule 3: one AEAD object per key, made here once and reused for every packet.
Rule 4: that object is the C Aead of runtime/native/fastseal.c where it was built
        (runtime/fast.py; one OpenSSL context per direction, keyed once), else cryptography's;
        both encrypt and decrypt alike and raise cryptography's InvalidTag.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from runtime import fast
from runtime.proto.faults import ProtocolViolation

AES_256_GCM = "aes-256-gcm"
CHACHA20_POLY1305 = "chacha20-poly1305"
CIPHERS = (AES_256_GCM, CHACHA20_POLY1305)
KEY_LEN = 32
PUBLIC_KEY_LEN = 32
_LABEL = b"selfvpn data keys v1"
_BINDING = struct.Struct("!II")
_fastseal = fast.load("_fastseal")
NATIVE = _fastseal is not None

Aead = AESGCM | ChaCha20Poly1305 if _fastseal is None else AESGCM | ChaCha20Poly1305 | _fastseal.Aead


class Ephemeral:
    """One side's X25519 key pair for one epoch."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def exchange(self, peer_public: bytes) -> bytes:
        """The shared secret; a malformed or low-order peer key is a ProtocolViolation."""
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise ProtocolViolation("bad-public-key") from None


def derive(
    shared: bytes, *, session_id: int, epoch: int, client_public: bytes, server_public: bytes
) -> tuple[bytes, bytes]:
    """(client-to-server key, server-to-client key), 32 bytes each."""
    info = _LABEL + _BINDING.pack(session_id, epoch) + client_public + server_public
    okm = HKDF(hashes.SHA256(), 2 * KEY_LEN, salt=_LABEL, info=info).derive(shared)
    return okm[:KEY_LEN], okm[KEY_LEN:]


def make_aead(cipher: str, key: bytes, *, native: bool = True) -> Aead:
    """The AEAD object for `cipher` (one of CIPHERS) under `key`: the C one when it was built
    and `native`, else cryptography's (Rule 4)."""
    if cipher not in CIPHERS:
        raise ValueError(f"unknown cipher {cipher!r}")
    if native and _fastseal is not None:
        return _fastseal.Aead(cipher, key)
    return AESGCM(key) if cipher == AES_256_GCM else ChaCha20Poly1305(key)
