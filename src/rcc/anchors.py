"""Signed anchors: the log chain's head, signed with a key the database never holds.

Ed25519 rather than HMAC: an HMAC anchor can be checked only by someone holding the
secret, who could then also forge anchors; an Ed25519 anchor is checked with the
public key, which auditors may hold and publish freely (docs/AUDIT.md).
The signing key is derived from RCC_AUDIT_KEY (at least 32 random bytes, hex).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from rcc.store.log_chain import ChainHead

FORMAT = "rcc-anchor-v1"
MIN_KEY_BYTES = 32


class AnchorKeyError(ValueError):
    """RCC_AUDIT_KEY (or a public key) is missing, malformed or too short."""


class AnchorError(ValueError):
    """An anchor file that cannot be read, or whose signature does not hold."""


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    """What one anchor asserts: the first `events` events of the log in commit order
    end at `position` (transaction `tx_id`) with log chain value `chain`."""

    format: str = FORMAT
    events: int
    position: int
    tx_id: int
    chain: str  # hex
    time: datetime
    public_key: str  # hex, for information: verifiers use the key they trust
    signature: str = ""  # hex Ed25519 signature of signed_bytes()

    def signed_bytes(self) -> bytes:
        """The exact bytes signed: every field but the signature, in a fixed layout."""
        fields = (self.format, self.events, self.position, self.tx_id, self.chain)
        return "\n".join(map(str, (*fields, self.time.isoformat()))).encode()

    @property
    def head(self) -> ChainHead:
        return ChainHead(
            events=self.events,
            position=self.position,
            tx_id=self.tx_id,
            chain=bytes.fromhex(self.chain),
        )


def signing_key(hex_key: str) -> Ed25519PrivateKey:
    """The Ed25519 key derived from RCC_AUDIT_KEY; refuses anything under 32 bytes."""
    if not hex_key.strip():
        raise AnchorKeyError("RCC_AUDIT_KEY is not set (e.g. `openssl rand -hex 32`)")
    try:
        raw = bytes.fromhex(hex_key.strip())
    except ValueError:
        raise AnchorKeyError("RCC_AUDIT_KEY must be hex (e.g. `openssl rand -hex 32`)") from None
    if len(raw) < MIN_KEY_BYTES:
        raise AnchorKeyError(
            f"RCC_AUDIT_KEY holds {len(raw)} bytes; at least {MIN_KEY_BYTES} random bytes "
            "are needed, hex-encoded (e.g. `openssl rand -hex 32`)"
        )
    # Hashing makes any length of key material into the 32-byte Ed25519 seed.
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"rcc-audit-v1" + raw).digest())


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """The public half, hex: what auditors need to check anchors."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def parse_public_key(hex_key: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 bytes in hex."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hex_key.strip()))
    except ValueError:
        raise AnchorKeyError("a public key is 32 bytes, hex-encoded (64 characters)") from None


def sign(head: ChainHead, key: Ed25519PrivateKey, at: datetime) -> Anchor:
    """An anchor of `head`, signed at `at`."""
    unsigned = Anchor(
        events=head.events,
        position=head.position,
        tx_id=head.tx_id,
        chain=head.chain.hex(),
        time=at,
        public_key=public_key_hex(key),
    )
    signature = key.sign(unsigned.signed_bytes()).hex()
    return msgspec.structs.replace(unsigned, signature=signature)


def check_signature(anchor: Anchor, trusted: Ed25519PublicKey) -> None:
    """Raise AnchorError unless `trusted` signed this anchor."""
    try:
        trusted.verify(bytes.fromhex(anchor.signature), anchor.signed_bytes())
    except (InvalidSignature, ValueError):
        raise AnchorError(
            f"anchor at event {anchor.events} (position {anchor.position}): the signature does "
            "not hold for the trusted public key (forged, edited or signed with another key)"
        ) from None


def encode(anchor: Anchor) -> bytes:
    """The anchor as one JSON document."""
    return msgspec.json.format(msgspec.json.encode(anchor), indent=2) + b"\n"


def decode(raw: bytes, where: str = "anchor") -> Anchor:
    """An anchor from its JSON; AnchorError when it is not one."""
    try:
        anchor = msgspec.json.decode(raw, type=Anchor)
    except msgspec.DecodeError as error:
        raise AnchorError(f"{where}: not an anchor: {error}") from None
    if anchor.format != FORMAT:
        raise AnchorError(f"{where}: unknown anchor format {anchor.format!r}")
    return anchor


def read(path: Path) -> Anchor:
    """An anchor file; AnchorError when unreadable or malformed."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise AnchorError(f"{path}: {error.strerror}") from None
    return decode(raw, str(path))


def write_in(directory: Path, anchor: Anchor) -> Path:
    """Store an anchor in `directory` under a name that sorts by log size then time."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = anchor.time.strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"anchor-{anchor.events:015d}-{stamp}.json"
    partial = path.with_suffix(".part")
    partial.write_bytes(encode(anchor))
    partial.replace(path)  # readers never see half a file
    return path


def found_in(directory: Path) -> list[Path]:
    """The anchor files in a directory, oldest (smallest log) first."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("anchor-*.json"))
