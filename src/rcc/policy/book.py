"""Resolving a policy: the narrowest scope in effect at an instant wins.

Pure: a PolicyBook is every PolicySet event of the `policies` stream, in order; the
same book answers "now" and "as of any past instant", and a replay of the events
rebuilds the same book, hence the same answers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import msgspec

from rcc.domain.events import PolicySet, PolicyValue
from rcc.policy.keys import KEYS, SCOPES


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded setting: `seq` is its version in the `policies` stream."""

    seq: int
    key: str
    scope: str
    scope_id: str
    value: PolicyValue
    effective_at: datetime
    recorded_at: datetime
    reason: str
    actor: str
    before: PolicyValue = None


_UNSET: object = object()
Slot = tuple[str, str, str]  # (key, scope, scope id)


class PolicyBook:
    """Every setting, indexed by (key, scope, scope id) in (effective_at, seq) order."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries = sorted(entries, key=lambda e: e.seq)
        slots: dict[Slot, list[Entry]] = defaultdict(list)
        for entry in self.entries:
            slots[(entry.key, entry.scope, entry.scope_id)].append(entry)
        order = lambda e: (e.effective_at, e.seq)  # noqa: E731
        self._slots = {s: sorted(es, key=order) for s, es in slots.items()}

    def at(self, slot: Slot, when: datetime) -> Entry | None:
        """The setting of one scope in effect at `when`: the latest to take effect by then."""
        found = None
        for entry in self._slots.get(slot, ()):
            if entry.effective_at > when:
                break
            found = entry
        return found

    def slots(self) -> list[Slot]:
        return sorted(self._slots)

    def next_change(self, after: datetime) -> datetime | None:
        """The first instant after `after` at which a setting takes effect (None: none
        is dated later): until then every answer of the book stays what it is."""
        return min((e.effective_at for e in self.entries if e.effective_at > after), default=None)


def resolve(
    book: PolicyBook,
    key: str,
    *,
    user: str | None = None,
    org: str | None = None,
    plan: str | None = None,
    at: datetime | None = None,
    default: object = _UNSET,
) -> PolicyValue:
    """THE policy lookup: the value of `key` for this user, org and plan at `at` (now):
    user > org > plan > global > `default` (an environment setting) > the built-in."""
    when = at or datetime.now(UTC)
    ids = {"user": user, "org": org, "plan": plan, "global": ""}
    for scope in SCOPES:
        scope_id = ids[scope]
        if scope_id is None:
            continue
        if (entry := book.at((key, scope, scope_id), when)) is not None:
            return entry.value
    if default is not _UNSET:
        return default  # type: ignore[return-value]
    return KEYS[key].default


def entry_of(event: PolicySet, seq: int, recorded_at: datetime) -> Entry:
    return Entry(
        seq=seq, key=event.key, scope=event.scope, scope_id=event.scope_id, value=event.value,
        effective_at=event.effective_at, recorded_at=recorded_at, reason=event.reason,
        actor=event.actor, before=event.before,
    )  # fmt: skip


def int_or_none(value: PolicyValue) -> int | None:
    """An int key's value (None: no limit); a list here is a registry mistake."""
    if isinstance(value, list):
        raise TypeError("expected a whole number, got a list")
    return value


def scope_values(book: PolicyBook, key: str, when: datetime) -> Mapping[tuple[str, str], Entry]:
    """Every scope's setting of `key` in effect at `when` (for the admin list)."""
    found = {}
    for k, scope, scope_id in book.slots():
        if k == key and (entry := book.at((k, scope, scope_id), when)) is not None:
            found[(scope, scope_id)] = entry
    return found
