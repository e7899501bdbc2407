"""Group commit for job creation: CreateJob commands that arrive while earlier ones are
being committed are decided together in the next transaction.

Each creation alone costs a transaction of its own (begin, lock, append, commit) and
holds its wallet's row lock for all of it, so a hot wallet queues and every commit
pays its own flush. Grouped, one transaction locks every wallet the group touches (in
stream-id order, as every writer does, so groups cannot deadlock), decides each
command on its own in arrival order against the state the previous ones left (a short
balance refuses that command only), appends everything at once and commits once.

Nothing waits on purpose: a command runs at once when a runner is free, except one
whose user's wallet a running group holds (it would only wait for that lock inside its
own group): it goes in the next group. Two runners split the waiting users, so one
group's decisions (Python) overlap the other's append and commit (the server). Every
caller is answered only after the transaction that holds its events committed.

Idempotency keys: the group first takes the advisory lock of every key it carries, in
ascending lock order, before it locks any wallet (UnitOfWork.serialise). A single
command does the same with its one key. Every transaction thus takes key locks before
row locks and key locks in one global order, so no wait cycle can form between groups,
single commands and other processes; a twin of a command running elsewhere makes the
whole group wait for it, and the group then replays the first answer.

Failures: a group re-runs its commands alone only when its transaction certainly did not
commit: an error raised before COMMIT was sent (a conflict, a key won elsewhere, a lost
connection), or a lost COMMIT reply that rcc.store.outcome proved did not commit. When
that check cannot tell, every caller of the group gets OutcomeUnknown (503
outcome_unknown): running the commands again could charge twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import msgspec

from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.admission import Admitted
from rcc.domain.errors import DomainError, IdempotencyKeyReused, NotFound
from rcc.domain.events import user_stream
from rcc.policy.terms import JobTerms, job_terms
from rcc.service.commands import CreateJob
from rcc.service.handlers import Done, accepted, admit, fingerprint, stage_admission
from rcc.service.lot_window import decide_on_enough_lots
from rcc.store.event_store import Appended
from rcc.store.outcome import OutcomeUnknown
from rcc.store.unit_of_work import Head, Remember, UnitOfWork
from rcc.store.wallet_lots import FRONT_LOTS

MAX_GROUP = 128
RUNNERS = 2  # transactions in flight per process; more only queue on the same locks

Outcome = Done | DomainError


@dataclass
class _Ask:
    cmd: CreateJob
    metadata: dict[str, Any] | None
    key: str | None
    answer: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.Future())

    @property
    def print(self) -> bytes:
        return fingerprint(self.cmd) if self.key else b""


@dataclass
class _Wallet:
    stream: str
    version: int
    state: wallets.WalletState


class Coalescer:
    """A queue of CreateJob commands served by a few runners, a group at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._queue: list[_Ask] = []
        self._runners = 0  # runners alive
        self._busy = 0  # runners inside a group
        self._in_flight: Counter[str] = Counter()  # users of the groups being run

    async def submit(
        self, cmd: CreateJob, metadata: dict[str, Any] | None, key: str | None
    ) -> Outcome:
        ask = _Ask(cmd, metadata, key)
        self._queue.append(ask)
        self._start_runner()
        # Shielded: a caller that goes away does not stop its command half-way.
        return await asyncio.shield(ask.answer)

    def _start_runner(self) -> None:
        if self._queue and self._runners < RUNNERS:
            self._runners += 1
            asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Take groups and answer them while commands wait for one."""
        try:
            while group := self._take():
                self._start_runner()  # for the rest
                self._busy += 1
                users = Counter(ask.cmd.user_id for ask in group)
                self._in_flight += users
                try:
                    await self._answer(group)
                finally:
                    self._busy -= 1
                    self._in_flight -= users
        finally:
            self._runners -= 1

    def _take(self) -> list[_Ask]:
        """A runner's group: in arrival order, its share of the waiting users (split
        among the runners not inside a group) with every waiting command of theirs,
        leaving the commands of users whose group is being run.

        Two groups in flight overlap one's decisions (in Python) with the other's
        append and commit (in the server), on machines where both share the cores. A
        user's commands stay together: split, the second half would wait for the first
        half's wallet lock (a hot wallet would commit half as many per flush). For the
        same reason a command whose user is in a running group waits in the queue for
        the next group (that group's runner takes it when it is done)."""
        idle = max(1, RUNNERS - self._busy)
        waiting = {ask.cmd.user_id for ask in self._queue} - self._in_flight.keys()
        share = -(-len(waiting) // idle)
        group: list[_Ask] = []
        users: set[str] = set()
        rest: list[_Ask] = []
        for ask in self._queue:
            user = ask.cmd.user_id
            joins = user in users or (user not in self._in_flight and len(users) < share)
            if joins and len(group) < MAX_GROUP:
                group.append(ask)
                users.add(user)
            else:
                rest.append(ask)
        self._queue = rest
        return group

    async def _answer(self, group: list[_Ask]) -> None:
        """Answer every caller of the group: together if possible, else one by one if
        the group certainly did not commit."""
        if len(group) == 1:
            await self._run_alone(group[0])
            return
        try:
            outcomes = await self._run_group(group)
        except asyncio.CancelledError:
            for ask in group:
                ask.answer.cancel()
            raise
        except _RolledBack:
            for ask in group:
                await self._run_alone(ask)
            return
        except Exception as error:  # OutcomeUnknown, or a failure after the commit
            for ask in group:
                ask.answer.set_exception(error)
            return
        for ask, outcome in zip(group, outcomes, strict=True):
            ask.answer.set_result(outcome)

    async def _run_alone(self, ask: _Ask) -> None:
        from rcc.service.bus import execute_alone

        try:
            outcome = await execute_alone(
                self.pool, ask.cmd, metadata=ask.metadata, idempotency_key=ask.key
            )
        except asyncio.CancelledError:
            ask.answer.cancel()
            raise
        except Exception as error:
            ask.answer.set_exception(error)
        else:
            ask.answer.set_result(outcome)

    async def _run_group(self, group: list[_Ask]) -> list[Outcome]:
        """Decide every command of the group in order, in one transaction, and commit."""
        from rcc.service.bus import done

        try:
            decided, appended = await self._decide_and_commit(group)
        except OutcomeUnknown:
            raise
        except Exception as error:
            # Raised before COMMIT was sent, or after a lost reply proven not to have
            # committed: nothing of this transaction remains.
            raise _RolledBack from error
        answers: list[Outcome] = []
        for outcome in decided:
            if isinstance(outcome, _Twin):
                answers.append(outcome.answer(answers, group))
            elif isinstance(outcome, (Done, DomainError)):
                answers.append(outcome)
            else:
                answers.append(done(outcome, appended))
        return answers

    async def _decide_and_commit(self, group: list[_Ask]) -> tuple[list[Any], list[Appended]]:
        """The group's transaction: each command's decision, and where the events landed."""
        from rcc.service.bus import replay

        async with UnitOfWork(self.pool) as uow:
            asked = [a.key for a in group if a.key]
            remembered = await uow.serialise(*asked) if asked else {}
            people = await _lock_wallets(uow, Counter(a.cmd.user_id for a in group))
            terms = await job_terms(uow.conn, list(people))  # policy prices, limits (h6)
            decided: list[Any] = []
            first_by_key: dict[str, int] = {}
            keys: list[Remember] = []
            for index, ask in enumerate(group):
                if ask.key and ask.key in remembered:
                    decided.append(replay(remembered[ask.key], ask.print))
                elif ask.key and ask.key in first_by_key:
                    decided.append(_Twin(first_by_key[ask.key], ask.print))
                elif ask.cmd.user_id not in people:
                    decided.append(NotFound(detail="user not found"))
                else:
                    user, wallet = people[ask.cmd.user_id]
                    admitted, _ = await decide_on_enough_lots(  # front lots, more (h9)
                        uow, wallet.state, _admission(ask, user, terms[ask.cmd.user_id])
                    )
                    if isinstance(admitted, DomainError):
                        decided.append(admitted)
                        continue
                    stage_admission(uow, admitted, wallet.version, ask.metadata or {})
                    wallet.state = admitted.wallet_after
                    result = accepted(admitted)
                    decided.append(result)
                    if ask.key:
                        first_by_key[ask.key] = index
                        keys.append(Remember(ask.key, ask.print, result))
            appended = await uow.commit(keys)
        return decided, appended


class _RolledBack(Exception):
    """A group's transaction that certainly did not commit (its commands may run alone)."""


@dataclass
class _Twin:
    """A command whose idempotency key an earlier command of the same group used."""

    first: int
    print: bytes

    def answer(self, answers: list[Outcome], group: list[_Ask]) -> Outcome:
        first = answers[self.first]
        if self.print != group[self.first].print or not isinstance(first, Done):
            return IdempotencyKeyReused(
                detail="this Idempotency-Key was already used for a different request"
            )
        return Done(
            result=first.result,
            checkpoint=first.checkpoint,
            replayed=True,
            recorded_at=first.recorded_at,
        )


def _admission(
    ask: _Ask, user: users.UserState, terms: JobTerms | None
) -> Callable[[wallets.WalletState], Admitted | DomainError]:
    return lambda wallet: admit(ask.cmd, user, wallet, terms)


async def _lock_wallets(
    uow: UnitOfWork, asks: Counter[str]
) -> dict[str, tuple[users.UserState, _Wallet]]:
    """Each user with its wallet, every wallet locked in stream-id order, then the
    front lots of each wallet: one more per command (a lot usually covers a job; when
    they fall short, every lot is read: see rcc.service.lot_window)."""
    rows = await uow.conn.fetch(
        """SELECT u.stream_id AS user_stream, u.state AS user_state,
                  w.stream_id AS wallet_stream, w.version AS wallet_version,
                  w.state AS wallet_state
             FROM streams u
             JOIN streams w ON w.stream_id = 'wallet-' || (u.state->>'wallet_id')
            WHERE u.stream_id = ANY($1::text[])
            ORDER BY w.stream_id
              FOR UPDATE OF w""",
        [user_stream(u) for u in sorted(asks)],
    )
    heads = await uow.with_lots(
        {r["wallet_stream"]: Head(r["wallet_version"], r["wallet_state"]) for r in rows},
        {r["wallet_stream"]: FRONT_LOTS + asks[r["user_state"].get("user_id", "")] for r in rows},
    )
    found: dict[str, tuple[users.UserState, _Wallet]] = {}
    for row in rows:
        user = msgspec.convert(row["user_state"], users.UserState)
        wallet = heads[row["wallet_stream"]].as_state(wallets.WalletState)
        if user.registered and wallet.opened:
            found[user.user_id] = (
                user,
                _Wallet(row["wallet_stream"], row["wallet_version"], wallet),
            )
    return found


_coalescers: dict[int, Coalescer] = {}


def coalescer_for(pool: asyncpg.Pool) -> Coalescer:
    """The process's coalescer for this pool (pools cannot be weakly referenced: keyed by
    id, checked by identity, forgotten once their pool closes)."""
    found = _coalescers.get(id(pool))
    if found is None or found.pool is not pool:
        for key in [k for k, c in _coalescers.items() if c.pool.is_closing()]:
            del _coalescers[key]
        found = _coalescers[id(pool)] = Coalescer(pool)
    return found
