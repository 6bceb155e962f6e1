"""Money in SQL: accounts, transfers and postings; parties; charges; spending privileges, PINs
and daily spending. ``Books`` is one transaction's view of them (the HTTP side's unit of work,
and a pos tap's inside its decision batch).

Every limit is the database's: money leaves an account only through an UPDATE whose WHERE
refuses to pass its floor; a charge is paid once by a unique index on the charge transfer and a
compare-and-set on its state; refunds stay within the charge by the UPDATE that counts them; a
daily limit by the UPDATE that adds to the day's spending. Nothing is read in Python and then
written on the strength of that read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, false, func, select, text, true, update
from sqlalchemy.engine import Row

from ..core.entry import Reader
from ..core.payments import ledger
from ..core.payments.ledger import Transfer
from ..core.payments.records import (
    APPROVED,
    EXPIRED,
    PENDING,
    Account,
    Charge,
    LedgerTotals,
    Posted,
    Privilege,
)
from . import catalog
from .engine import insert
from .schema import (
    accounts,
    charges,
    charging,
    guests,
    parties,
    party_members,
    postings,
    spending,
    transfers,
)

_CHARGE = select(charges).where(charges.c.id == bindparam("id"))
_PRIVILEGE = select(charging).where(charging.c.guest_id == bindparam("guest_id"))
_PARTY_ACCOUNT = (
    select(parties.c.account_id)
    .join(party_members, party_members.c.party_id == parties.c.id)
    .where(party_members.c.guest_id == bindparam("guest_id"))
)


class Books:
    """The ledger, charges and privileges inside one open transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    # -- accounts and transfers -------------------------------------------------------------

    def open_account(self, account_id: str, kind: str, currency: str, floor: int | None) -> None:
        """Create the account if it does not exist (its floor is set when it is made)."""
        row = {"id": account_id, "kind": kind, "currency": currency, "floor": floor}
        stmt = insert(self._dialect, accounts).on_conflict_do_nothing(index_elements=["id"])
        self.conn.execute(stmt, row)

    def account(self, account_id: str, *, lock: bool = False) -> Account | None:
        """The account; with ``lock``, its row held until the transaction ends (PostgreSQL's
        FOR UPDATE; a SQLite write transaction holds the whole database already)."""
        query = select(accounts).where(accounts.c.id == account_id)
        row = self.conn.execute(query.with_for_update() if lock else query).first()
        return None if row is None else Account(**row._mapping)

    def post(self, transfer: Transfer, *, overdraft: bool = False) -> tuple[int, int] | None:
        """Post ``transfer``; the source's and the target's balances after it, or None (and
        nothing written) when the source would go below its floor. With ``overdraft`` (an
        offline sale: the guest has the goods) it goes below all the same, and the account is
        marked overdrawn until a posting brings it back to its floor."""
        amount = transfer.amount
        take = (
            update(accounts)
            .where(accounts.c.id == transfer.source)
            .where(accounts.c.currency == transfer.currency)
            .returning(accounts.c.balance)
        )
        if overdraft:
            below = accounts.c.balance - amount < accounts.c.floor
            take = take.values(
                balance=accounts.c.balance - amount,
                overdrawn=case((below, true()), else_=accounts.c.overdrawn),
            )
        else:
            take = take.where(
                (accounts.c.floor.is_(None)) | (accounts.c.balance - amount >= accounts.c.floor)
            ).values(balance=accounts.c.balance - amount)
        left = self.conn.execute(take).scalar()
        if left is None:
            return None
        back_to_floor = accounts.c.balance + amount >= accounts.c.floor
        give = (
            update(accounts)
            .where(accounts.c.id == transfer.target)
            .values(
                balance=accounts.c.balance + amount,
                overdrawn=case((back_to_floor, false()), else_=accounts.c.overdrawn),
            )
            .returning(accounts.c.balance)
        )
        reached = self.conn.execute(give).scalar()
        if reached is None:
            raise LookupError(f"no account {transfer.target!r}")
        self.conn.execute(insert(self._dialect, transfers), _transfer_row(transfer))
        self.conn.execute(
            insert(self._dialect, postings),
            [
                {"transfer_id": transfer.id, "account_id": account, "amount": amount}
                for account, amount in transfer.postings()
            ],
        )
        return int(left), int(reached)

    def statement(self, account_id: str, limit: int = 100) -> list[Posted]:
        """The account's newest postings first."""
        query = (
            select(transfers, postings.c.amount.label("delta"))
            .join(postings, postings.c.transfer_id == transfers.c.id)
            .where(postings.c.account_id == account_id)
            .order_by(transfers.c.created_ms.desc(), transfers.c.id.desc())
            .limit(limit)
        )
        rows = self.conn.execute(query).all()
        return [
            Posted(transfer, int(row.delta))
            for transfer, row in zip(self._transfers(rows), rows, strict=True)
        ]

    def charge_transfers(self, charge_id: bytes) -> list[Transfer]:
        query = select(transfers).where(transfers.c.charge_id == charge_id)
        return self._transfers(self.conn.execute(query.order_by(transfers.c.id)).all())

    def totals(self) -> LedgerTotals:
        """The ledger's invariants, counted (``GET /v1/ledger/check``)."""
        conn = self.conn
        per_transfer = (
            select(postings.c.transfer_id)
            .group_by(postings.c.transfer_id)
            .having(func.sum(postings.c.amount) != 0)
            .subquery()
        )
        posted = (
            select(postings.c.account_id, func.sum(postings.c.amount).label("sum"))
            .group_by(postings.c.account_id)
            .subquery()
        )
        drifted = (
            select(func.count())
            .select_from(accounts.outerjoin(posted, posted.c.account_id == accounts.c.id))
            .where(accounts.c.balance != func.coalesce(posted.c.sum, 0))
        )
        below = accounts.c.floor.is_not(None) & (accounts.c.balance < accounts.c.floor)
        overdrawn = select(func.count()).where(below, accounts.c.overdrawn)
        below_floor = select(func.count()).where(below, ~accounts.c.overdrawn)
        return LedgerTotals(
            accounts=int(conn.scalar(select(func.count()).select_from(accounts)) or 0),
            transfers=int(conn.scalar(select(func.count()).select_from(transfers)) or 0),
            postings=int(conn.scalar(select(func.count()).select_from(postings)) or 0),
            total=int(conn.scalar(select(func.coalesce(func.sum(accounts.c.balance), 0))) or 0),
            unbalanced=int(conn.scalar(select(func.count()).select_from(per_transfer)) or 0),
            drifted=int(conn.scalar(drifted) or 0),
            below_floor=int(conn.scalar(below_floor) or 0),
            overdrawn=int(conn.scalar(overdrawn) or 0),
        )

    def reader(self, reader_id: str) -> Reader | None:
        return catalog.reader(self.conn, reader_id)

    # -- parties ----------------------------------------------------------------------------

    def party_account(self, guest_id: str) -> str | None:
        """The account a guest's charges are paid from: their party's."""
        value = self.conn.execute(_PARTY_ACCOUNT, {"guest_id": guest_id}).scalar()
        return None if value is None else str(value)

    def guest_exists(self, guest_id: str) -> bool:
        query = select(guests.c.id).where(guests.c.id == guest_id)
        return self.conn.execute(query).first() is not None

    def add_party(self, party_id: str, name: str, account_id: str) -> None:
        stmt = insert(self._dialect, parties).on_conflict_do_nothing(index_elements=["id"])
        self.conn.execute(stmt, {"id": party_id, "name": name, "account_id": account_id})

    def join_party(self, guest_id: str, party_id: str) -> None:
        stmt = insert(self._dialect, party_members)
        stmt = stmt.on_conflict_do_update(
            index_elements=["guest_id"], set_={"party_id": stmt.excluded.party_id}
        )
        self.conn.execute(stmt, {"guest_id": guest_id, "party_id": party_id})

    def party_of(self, guest_id: str) -> str | None:
        query = select(party_members.c.party_id).where(party_members.c.guest_id == guest_id)
        value = self.conn.execute(query).scalar()
        return None if value is None else str(value)

    # -- charges ----------------------------------------------------------------------------

    def add_charge(self, charge: Charge) -> bool:
        """Insert a pending charge; False (nothing written) when its reader has one already:
        the partial unique index decides, so two tills racing for one reader cannot both."""
        stmt = (
            insert(self._dialect, charges)
            .on_conflict_do_nothing(
                # The index's own predicate, as text: PostgreSQL matches a partial index only
                # to a WHERE it can see implies it, and a bound parameter hides the value.
                index_elements=["reader_id"],
                index_where=text("state = 'pending'"),
            )
            .returning(charges.c.id)
        )
        return self.conn.execute(stmt, _charge_row(charge)).first() is not None

    def charge(self, charge_id: bytes) -> Charge | None:
        row = self.conn.execute(_CHARGE, {"id": charge_id}).first()
        return None if row is None else _charge(row)

    def charges(self, charge_ids: Iterable[bytes]) -> dict[bytes, Charge]:
        query = select(charges).where(charges.c.id.in_(list(charge_ids)))
        return {row.id: _charge(row) for row in self.conn.execute(query)}

    def pending_charge_at(self, reader_id: str) -> Charge | None:
        query = select(charges).where(charges.c.reader_id == reader_id, charges.c.state == PENDING)
        row = self.conn.execute(query).first()
        return None if row is None else _charge(row)

    def complete_charge(self, charge: Charge, *, payable: tuple[str, ...] = (PENDING,)) -> bool:
        """Move a pending charge (or one in another of the ``payable`` states: an offline
        sale's) to ``charge.state`` with its outcome; False (nothing written) if it is in none
        of them: another tap, a cancel or its timeout came first."""
        stmt = (
            update(charges)
            .where(charges.c.id == charge.id, charges.c.state.in_(payable))
            .values(
                state=charge.state,
                reason=charge.reason,
                guest_id=charge.guest_id,
                tap_mid=charge.tap_mid,
                transfer_id=charge.transfer_id,
                completed_ms=charge.completed_ms,
            )
            .returning(charges.c.id)
        )
        return self.conn.execute(stmt).first() is not None

    def expire_charges(self, now_ms: int, *, reader_id: str | None = None) -> list[Charge]:
        """Every pending charge past its time (at ``reader_id`` only, if given), moved to
        expired; the ones moved. Whoever expires a charge tells its reader (CANCEL)."""
        due = (charges.c.state == PENDING) & (charges.c.expires_ms <= now_ms)
        if reader_id is not None:
            due &= charges.c.reader_id == reader_id
        stmt = (
            update(charges)
            .where(due)
            .values(state=EXPIRED, reason="charge_expired", completed_ms=now_ms)
            .returning(*charges.c)
        )
        return [_charge(row) for row in self.conn.execute(stmt)]

    def count_refund(self, charge_id: bytes, amount: int) -> bool:
        """Add ``amount`` to what was refunded of an approved charge; False (nothing written)
        when that would refund more than was charged."""
        stmt = (
            update(charges)
            .where(
                charges.c.id == charge_id,
                charges.c.state == APPROVED,
                charges.c.refunded + amount <= charges.c.amount,
            )
            .values(refunded=charges.c.refunded + amount)
            .returning(charges.c.id)
        )
        return self.conn.execute(stmt).first() is not None

    # -- privileges, PINs, daily spending ---------------------------------------------------

    def privilege(self, guest_id: str) -> Privilege:
        row = self.conn.execute(_PRIVILEGE, {"guest_id": guest_id}).first()
        return Privilege(guest_id) if row is None else catalog.privilege_of(row)

    def set_limits(
        self, guest_id: str, *, enabled: bool, daily_limit: int | None, pin_threshold: int | None
    ) -> None:
        """What the guest may spend; the PIN and its count are left as they are."""
        self._update_privilege(
            guest_id, enabled=enabled, daily_limit=daily_limit, pin_threshold=pin_threshold
        )

    def set_pin_hash(
        self, guest_id: str, pin_hash: str, *, check: bytes | None = None, salt: bytes | None = None
    ) -> None:
        """A new PIN, with its offline check and salt: the wrong tries and the lock go with the
        old one."""
        self._update_privilege(
            guest_id, pin_hash=pin_hash, pin_check=check, pin_salt=salt, failures=0, locked=False
        )

    def unlock(self, guest_id: str) -> None:
        self._update_privilege(guest_id, failures=0, locked=False)

    def _update_privilege(self, guest_id: str, **columns: object) -> None:
        """Only the given columns, in one UPDATE: two desks (or a desk and a wrong PIN) changing
        different things at once both keep their change."""
        self._privilege_row(guest_id)
        stmt = update(charging).where(charging.c.guest_id == guest_id).values(**columns)
        self.conn.execute(stmt)

    def _privilege_row(self, guest_id: str) -> None:
        """A guest nobody set anything for gets the defaults' row, to update."""
        start = insert(self._dialect, charging).on_conflict_do_nothing(index_elements=["guest_id"])
        self.conn.execute(start, {"guest_id": guest_id})

    def wrong_pin(self, guest_id: str, attempts: int) -> Privilege:
        """Count a wrong PIN, locking at ``attempts`` in a row: in one statement, so two taps
        racing cannot both get the last try."""
        self._privilege_row(guest_id)
        stmt = (
            update(charging)
            .where(charging.c.guest_id == guest_id)
            .values(
                failures=charging.c.failures + 1,
                locked=charging.c.locked | (charging.c.failures + 1 >= attempts),
            )
        )
        self.conn.execute(stmt)
        return self.privilege(guest_id)

    def right_pin(self, guest_id: str) -> None:
        stmt = update(charging).where(charging.c.guest_id == guest_id, charging.c.failures != 0)
        self.conn.execute(stmt.values(failures=0))

    def spend(self, guest_id: str, day: date, amount: int, limit: int | None) -> bool:
        """Add to the guest's spending on ``day``; False (nothing written) past ``limit``."""
        start = insert(self._dialect, spending).on_conflict_do_nothing(
            index_elements=["guest_id", "day"]
        )
        self.conn.execute(start, {"guest_id": guest_id, "day": day, "spent": 0})
        stmt = update(spending).where(spending.c.guest_id == guest_id, spending.c.day == day)
        if limit is not None:
            stmt = stmt.where(spending.c.spent + amount <= limit)
        stmt = stmt.values(spent=spending.c.spent + amount).returning(spending.c.spent)
        return self.conn.execute(stmt).first() is not None

    def savepoint(self) -> AbstractContextManager[object]:
        """Writes that are undone together if the block raises; the transaction goes on."""
        return self.conn.begin_nested()

    def spent(self, guest_id: str, day: date) -> int:
        query = select(spending.c.spent).where(
            and_(spending.c.guest_id == guest_id, spending.c.day == day)
        )
        return int(self.conn.execute(query).scalar() or 0)

    # -- rows -------------------------------------------------------------------------------

    def _transfers(self, rows: Sequence[Row[Any]]) -> list[Transfer]:
        """Transfers from their rows, with the accounts their postings name (one query for all
        of them: a statement is a page of transfers, not a query each)."""
        if not rows:
            return []
        query = select(postings.c.transfer_id, postings.c.account_id, postings.c.amount).where(
            postings.c.transfer_id.in_([row.id for row in rows])
        )
        source: dict[str, str] = {}
        target: dict[str, str] = {}
        for transfer_id, account_id, amount in self.conn.execute(query):
            (source if amount < 0 else target)[transfer_id] = account_id
        return [
            Transfer(
                id=row.id,
                kind=row.kind,
                amount=int(row.amount),
                currency=row.currency,
                source=source.get(row.id, "-"),
                target=target.get(row.id, "-"),
                created_ms=int(row.created_ms),
                guest_id=row.guest_id,
                charge_id=row.charge_id,
                reference=row.reference,
                actor=row.actor,
            )
            for row in rows
        ]


def _transfer_row(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "kind": transfer.kind,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "guest_id": transfer.guest_id,
        "charge_id": transfer.charge_id,
        "reference": transfer.reference,
        "actor": transfer.actor,
        "created_ms": transfer.created_ms,
    }


def _charge_row(charge: Charge) -> dict[str, Any]:
    row: dict[str, Any] = {
        name: getattr(charge, name) for name in Charge.__dataclass_fields__ if name != "lines"
    }
    row["lines"] = json.dumps([list(line) for line in charge.lines])
    return row


def _charge(row: Row[Any]) -> Charge:
    values = dict(row._mapping)
    values["lines"] = tuple((str(text), int(amount)) for text, amount in json.loads(row.lines))
    return Charge(**values)


def charges_due(conn: Connection, now_ms: int) -> bool:
    query = select(charges.c.id).where(charges.c.state == PENDING, charges.c.expires_ms <= now_ms)
    return conn.execute(query.limit(1)).first() is not None


def load_parties(books: Books, parties: Iterable[Mapping[str, Any]], currency: str) -> None:
    """A venue file's parties: each pays from a wallet (stored value) or a folio (post-paid,
    down to minus its ``credit_limit``), for its ``members``; a member's own ``charging``
    (enabled, daily_limit, pin_threshold) is set where given. An account keeps the floor it
    was made with."""
    for party in parties:
        folio = party.get("pays_by", "wallet") == "folio"
        limit = int(party.get("credit_limit", 0))
        if folio and limit <= 0:
            raise ValueError(f"party {party['id']!r}: a folio needs a credit_limit above 0")
        account = (ledger.folio if folio else ledger.wallet)(party["id"])
        books.open_account(
            account, "folio" if folio else "wallet", currency, -limit if folio else 0
        )
        books.add_party(party["id"], party.get("name", party["id"]), account)
        for member in party.get("members", []):
            books.join_party(member, party["id"])


def load_charging(books: Books, guest_id: str, charging: Mapping[str, Any]) -> None:
    """A venue file's ``charging`` for one guest (the PIN is set at a desk, never in a file)."""
    known = {"enabled", "daily_limit", "pin_threshold"}
    if not set(charging) <= known:
        raise ValueError(f"guest {guest_id!r}: charging takes only {', '.join(sorted(known))}")
    books.set_limits(
        guest_id,
        enabled=bool(charging.get("enabled", True)),
        daily_limit=charging.get("daily_limit"),
        pin_threshold=charging.get("pin_threshold"),
    )
