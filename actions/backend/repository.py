"""One repository over the contact-center database: SQLite (embedded default) or PostgreSQL.

The actions only ever talk to :class:`Repository`; which engine sits behind it is the URL's business
(``EMOTUNE_BACKEND_URL``, see :func:`backend_url`)::

    sqlite:////abs/path/shop.sqlite3         (created and seeded on first use when missing)
    postgresql://user@host:5432/shop         (password from PGPASSWORD, never in the URL on disk)

Every write is idempotent per conversation: a ticket carries an ``idempotency_key`` built from the
conversation id and its subject, so the same request asked twice (or retried by Rasa) returns the
ticket written the first time. Any failure to reach the database is a :class:`BackendUnavailable`;
the actions answer it with a spoken apology and a next step, never a silent turn.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = [
    "BACKEND_URL_ENV",
    "BackendError",
    "BackendUnavailable",
    "Customer",
    "Order",
    "Subscription",
    "Ticket",
    "Repository",
    "backend_url",
    "default_sqlite_path",
    "open_repository",
]

BACKEND_URL_ENV = "EMOTUNE_BACKEND_URL"
SCHEMA_FILE = Path(__file__).with_name("schema.sql")
REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a PostgreSQL connection attempt may take before the caller hears "the system is down".
CONNECT_TIMEOUT_S = 3


class BackendError(RuntimeError):
    """The backend refused a request (bad URL, violated constraint)."""


class BackendUnavailable(BackendError):
    """The database could not be reached or failed mid-request."""


@dataclass(frozen=True)
class Customer:
    account_number: str
    name: str


@dataclass(frozen=True)
class Order:
    order_number: str
    account_number: str
    item: str
    total_pence: int
    status: str  # processing | shipped | delivered | lost | refunded
    ordered_on: date
    expected_on: date | None
    delivered_on: date | None
    carrier: str | None


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    account_number: str
    plan: str
    monthly_pence: int
    status: str  # active | cancelling | cancelled
    renews_on: date
    ends_on: date | None


@dataclass(frozen=True)
class Ticket:
    reference: str
    kind: str  # refund | complaint | cancellation
    account_number: str
    order_number: str | None
    subscription_id: str | None
    category: str | None
    amount_pence: int | None
    conversation_id: str
    status: str
    created_at: str
    # True when this call wrote the ticket, False when it already existed (same conversation and subject).
    created: bool = False

    def as_payload(self) -> dict[str, Any]:
        """The ticket as the bot's custom payload and the hand-off context carry it."""
        return {
            "reference": self.reference,
            "kind": self.kind,
            "account_number": self.account_number,
            "order_number": self.order_number,
            "subscription_id": self.subscription_id,
            "category": self.category,
            "amount_pence": self.amount_pence,
            "status": self.status,
        }


def default_sqlite_path() -> Path:
    return REPO_ROOT / ".cache" / "backend" / "emotune-shop.sqlite3"


def backend_url() -> str:
    """``EMOTUNE_BACKEND_URL``, or the embedded SQLite file under ``.cache/backend/``."""
    return os.environ.get(BACKEND_URL_ENV) or f"sqlite:///{default_sqlite_path()}"


def _day(value: Any) -> date | None:
    return None if value in (None, "") else date.fromisoformat(str(value))


class Repository:
    """Reads customers, orders and subscriptions; writes tickets and cancellations, idempotently."""

    def __init__(self, connect: Callable[[], Any], dialect: str, errors: tuple[type[BaseException], ...],
                 integrity_error: type[BaseException]) -> None:  # fmt: skip
        self._connect = connect
        self.dialect = dialect
        self._errors = errors
        self._integrity_error = integrity_error

    # ------------------------------------------------------------------ plumbing
    def _sql(self, statement: str) -> str:
        # Queries are written with "?" placeholders (sqlite3); psycopg2 wants "%s".
        return statement if self.dialect == "sqlite" else statement.replace("?", "%s")

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        try:
            connection = self._connect()
        except self._errors as exc:
            raise BackendUnavailable(f"cannot reach the {self.dialect} backend: {exc}") from exc
        try:
            cursor = connection.cursor()
            yield cursor
            connection.commit()
        except self._integrity_error:
            connection.rollback()
            raise
        except self._errors as exc:
            raise BackendUnavailable(f"{self.dialect} backend failed: {exc}") from exc
        finally:
            connection.close()

    def _one(self, statement: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        with self._transaction() as cursor:
            cursor.execute(self._sql(statement), tuple(params))
            row = cursor.fetchone()
        return tuple(row) if row is not None else None

    def create_schema(self) -> None:
        statements = [s.strip() for s in SCHEMA_FILE.read_text(encoding="utf-8").split(";")]
        with self._transaction() as cursor:
            for statement in statements:
                body = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
                if body.strip():
                    cursor.execute(body)

    def execute_many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Seed/maintenance helper: one statement over many rows, in one transaction."""
        with self._transaction() as cursor:
            for row in rows:
                cursor.execute(self._sql(statement), tuple(row))

    def ping(self) -> None:
        """Raises :class:`BackendUnavailable` unless the database answers."""
        self._one("SELECT 1", ())

    # ------------------------------------------------------------------ reads
    def customer(self, account_number: str) -> Customer | None:
        row = self._one("SELECT account_number, name FROM customers WHERE account_number = ?", (account_number,))
        return Customer(*row) if row else None

    _ORDER_COLUMNS = ("order_number, account_number, item, total_pence, status, ordered_on, expected_on, "
                      "delivered_on, carrier")  # fmt: skip

    @staticmethod
    def _order(row: tuple[Any, ...]) -> Order:
        number, account, item, total, status, ordered, expected, delivered, carrier = row
        return Order(number, account, item, int(total), status, _day(ordered) or date.min, _day(expected),
                     _day(delivered), carrier)  # fmt: skip

    def order(self, order_number: str) -> Order | None:
        row = self._one(f"SELECT {self._ORDER_COLUMNS} FROM orders WHERE order_number = ?", (order_number,))
        return self._order(row) if row else None

    def latest_order(self, account_number: str) -> Order | None:
        row = self._one(
            f"SELECT {self._ORDER_COLUMNS} FROM orders WHERE account_number = ? "
            "ORDER BY ordered_on DESC, order_number DESC LIMIT 1",
            (account_number,),
        )
        return self._order(row) if row else None

    def subscription(self, account_number: str) -> Subscription | None:
        """The account's current subscription (active first, then cancelling), if any."""
        row = self._one(
            "SELECT subscription_id, account_number, plan, monthly_pence, status, renews_on, ends_on "
            "FROM subscriptions WHERE account_number = ? AND status IN ('active', 'cancelling') "
            "ORDER BY CASE status WHEN 'active' THEN 0 ELSE 1 END, subscription_id LIMIT 1",
            (account_number,),
        )
        if not row:
            return None
        sub_id, account, plan, monthly, status, renews, ends = row
        return Subscription(sub_id, account, plan, int(monthly), status, _day(renews) or date.min, _day(ends))

    _TICKET_COLUMNS = ("reference, kind, account_number, order_number, subscription_id, category, amount_pence, "
                       "conversation_id, status, created_at")  # fmt: skip

    def _ticket_where(self, where: str, params: Sequence[Any]) -> Ticket | None:
        row = self._one(f"SELECT {self._TICKET_COLUMNS} FROM tickets WHERE {where} LIMIT 1", params)
        return Ticket(*row) if row else None

    def ticket(self, reference: str) -> Ticket | None:
        return self._ticket_where("reference = ?", (reference,))

    def open_refund_for(self, order_number: str) -> Ticket | None:
        """A refund ticket already open for this order (from any conversation)."""
        return self._ticket_where("order_number = ? AND kind = 'refund' AND status = 'open'", (order_number,))

    def tickets_of(self, conversation_id: str) -> list[Ticket]:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(f"SELECT {self._TICKET_COLUMNS} FROM tickets WHERE conversation_id = ? "
                          "ORDER BY created_at, reference"),  # fmt: skip
                (conversation_id,),
            )
            return [Ticket(*row) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ writes (idempotent)
    def open_ticket(
        self,
        *,
        kind: str,
        conversation_id: str,
        account_number: str,
        subject: str,
        order_number: str | None = None,
        subscription_id: str | None = None,
        category: str | None = None,
        details: str = "",
        amount_pence: int | None = None,
    ) -> Ticket:
        """Write a ticket once per (conversation, kind, subject); later calls return the same ticket."""
        key = f"{conversation_id}/{kind}/{subject}"
        existing = self._ticket_where("idempotency_key = ?", (key,))
        if existing:
            return existing
        # timezone.utc, not datetime.UTC: the actions run on Python 3.10
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017
        for attempt in range(20):
            reference = _reference(key, attempt)
            try:
                with self._transaction() as cursor:
                    cursor.execute(
                        self._sql(
                            "INSERT INTO tickets (reference, kind, account_number, order_number, subscription_id, "
                            "category, details, amount_pence, conversation_id, idempotency_key, created_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING"
                        ),
                        (reference, kind, account_number, order_number, subscription_id, category, details[:2000],
                         amount_pence, conversation_id, key, created_at),
                    )  # fmt: skip
                    inserted = cursor.rowcount == 1
            except self._integrity_error:
                continue  # another subject already holds this reference: derive the next one
            ticket = self._ticket_where("idempotency_key = ?", (key,))
            if ticket is None:  # pragma: no cover - the row was just written or already there
                raise BackendError(f"ticket {key!r} vanished after its insert")
            return Ticket(**{**ticket.__dict__, "created": inserted})
        raise BackendError(f"no free ticket reference for {key!r}")

    def request_cancellation(self, subscription: Subscription, conversation_id: str) -> tuple[Subscription, Ticket]:
        """Cancel at the end of the paid period (the only cancellation policy), once per conversation."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("UPDATE subscriptions SET status = 'cancelling', ends_on = renews_on "
                          "WHERE subscription_id = ? AND status = 'active'"),  # fmt: skip
                (subscription.subscription_id,),
            )
        current = self.subscription(subscription.account_number) or subscription
        ticket = self.open_ticket(
            kind="cancellation",
            conversation_id=conversation_id,
            account_number=subscription.account_number,
            subject=subscription.subscription_id,
            subscription_id=subscription.subscription_id,
            details=f"{subscription.plan} plan ends on {current.ends_on or current.renews_on}",
        )
        return current, ticket


def _reference(key: str, attempt: int) -> str:
    digest = hashlib.sha256(f"{key}#{attempt}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 900000 + 100000}"


_sqlite_init_lock = threading.Lock()


def _sqlite_repository(path: Path) -> Repository:
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=10)
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    return Repository(connect, "sqlite", (sqlite3.Error,), sqlite3.IntegrityError)


def _postgres_repository(url: str) -> Repository:
    try:
        import psycopg2  # Rasa's own dependency, pinned in requirements/rasa.lock
    except ImportError as exc:  # pragma: no cover - the Rasa venv has it
        raise BackendError("PostgreSQL backend needs psycopg2 (requirements/rasa.lock)") from exc
    parsed = urlparse(url)
    params: dict[str, Any] = {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "dbname": unquote(parsed.path.lstrip("/")) or "emotune",
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    if parsed.username:
        params["user"] = unquote(parsed.username)
    if parsed.password:
        params["password"] = unquote(parsed.password)
    # Otherwise libpq reads PGPASSWORD / ~/.pgpass: secrets stay out of config files.

    def connect() -> Any:
        return psycopg2.connect(**params)

    return Repository(connect, "postgresql", (psycopg2.Error,), psycopg2.IntegrityError)


def _create_sqlite(path: Path) -> None:
    # Seeded under a temporary name and moved into place: another action server starting at the same
    # moment never sees a file without tables.
    from actions.backend.seed import seed

    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        seed(_sqlite_repository(scratch))
        if not path.exists():
            os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def open_repository(url: str | None = None, *, seed_if_new: bool = True) -> Repository:
    """The repository for ``url`` (default :func:`backend_url`).

    A SQLite file that does not exist yet is created with the schema and the demo data (the embedded
    default works out of the box); PostgreSQL is expected to be set up by ``python -m actions.backend.seed``.
    """
    url = url or backend_url()
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = Path(unquote(url[len("sqlite:///"):]))  # sqlite:////abs/path -> /abs/path
        if seed_if_new and not path.exists():
            with _sqlite_init_lock:
                if not path.exists():
                    _create_sqlite(path)
        return _sqlite_repository(path)
    if scheme in ("postgresql", "postgres"):
        return _postgres_repository(url)
    raise BackendError(f"unsupported backend URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
