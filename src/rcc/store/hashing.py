"""The hash chain, recomputed in Python exactly as `rcc_event_hash_v1` computes it in SQL."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime, timedelta

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SEP = "\x1f"
_PLACE = struct.Struct(">QQQ")  # seq, position, tx_id: 8 bytes each, big-endian


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exact (no float rounding)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def chain_link(
    prev: bytes,
    stream_id: str,
    version: int,
    type_: str,
    data_text: str,
    metadata_text: str,
    recorded_at: datetime,
) -> bytes:
    """sha256(previous hash || canonical bytes of the event).

    data_text and metadata_text are PostgreSQL's jsonb text form, which is canonical:
    keys sorted and de-duplicated, fixed spacing.
    """
    canonical = _SEP.join(
        (stream_id, str(version), type_, data_text, metadata_text, str(epoch_micros(recorded_at)))
    )
    return hashlib.sha256(prev + canonical.encode()).digest()


def log_link(prev: bytes, seq: int, position: int, tx_id: int, event_hash: bytes) -> bytes:
    """The log chain's link for event number `seq` in commit order (schema/0009).

    It covers the event's place (its number, position and transaction) and its
    per-stream hash, which covers its content, so any deletion, insertion, reordering
    or edit changes every later link.
    """
    return hashlib.sha256(prev + _PLACE.pack(seq, position, tx_id) + event_hash).digest()
