"""Create the backend schema and the demo customers, orders and subscriptions (our own invented data).

    .venv-rasa/bin/python -m actions.backend.seed                      # the embedded SQLite default
    .venv-rasa/bin/python -m actions.backend.seed --url postgresql://emotune@127.0.0.1:5432/shop --reset

Idempotent: rows that exist are left alone (``--reset`` empties the tables first). Dates are relative
to the day of seeding, so "delivered 5 days ago" stays inside the 30-day refund window whenever the
database was made; re-seed with ``--reset`` to move them. Each case below is one path of the bot:

| number   | what                                                                   |
|----------|------------------------------------------------------------------------|
| 482107   | order, delivered 5 days ago: refund eligible                           |
| 482233   | order, shipped, arrives in 2 days                                      |
| 517820   | order, delivered 45 days ago: outside the refund window                |
| 517944   | order, lost by the courier: refund eligible                            |
| 603311   | order, processing, arrives in 5 days                                   |
| 603512   | order, already refunded                                                |
| 48213706 | account (orders 482107, 482233), Plus plan active                      |
| 55120934 | account (orders 517820, 517944), Basic plan active                     |
| 61734420 | account (orders 603311, 603512), no subscription                       |
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from actions.backend.repository import Repository, backend_url, open_repository

__all__ = ["CUSTOMERS", "seed", "main"]

CUSTOMERS = [("48213706", "Robin Ashdown"), ("55120934", "Sam Okafor"), ("61734420", "Jo Lindqvist")]
# (order, account, item, pence, status, ordered days ago, expected in days, delivered days ago, carrier)
_ORDERS = [
    ("482107", "48213706", "wireless headphones", 5999, "delivered", 9, None, 5, "Parcelway"),
    ("482233", "48213706", "desk lamp", 2450, "shipped", 2, 2, None, "Parcelway"),
    ("517820", "55120934", "running shoes", 8900, "delivered", 50, None, 45, "QuickShip"),
    ("517944", "55120934", "phone case", 1299, "lost", 20, None, None, "QuickShip"),
    ("603311", "61734420", "coffee grinder", 3400, "processing", 1, 5, None, None),
    ("603512", "61734420", "electric kettle", 2999, "refunded", 40, None, 36, "Parcelway"),
]
# (id, account, plan, pence per month, status, renews in days)
_SUBSCRIPTIONS = [
    ("S-1001", "48213706", "Plus", 799, "active", 12),
    ("S-1002", "55120934", "Basic", 399, "active", 3),
    ("S-1003", "61734420", "Basic", 399, "cancelled", -20),
]


def seed(repository: Repository, today: date | None = None, reset: bool = False) -> None:
    """Schema plus demo rows; ``reset`` first deletes every ticket, order, subscription and customer."""
    today = today or date.today()

    def day(offset: int | None) -> str | None:
        return None if offset is None else (today + timedelta(days=offset)).isoformat()

    repository.create_schema()
    if reset:
        for table in ("tickets", "subscriptions", "orders", "customers"):
            repository.execute_many(f"DELETE FROM {table}", [()])
    repository.execute_many(
        "INSERT INTO customers (account_number, name) VALUES (?, ?) ON CONFLICT DO NOTHING", CUSTOMERS
    )
    repository.execute_many(
        "INSERT INTO orders (order_number, account_number, item, total_pence, status, ordered_on, expected_on, "
        "delivered_on, carrier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (number, account, item, pence, status, day(-ordered), day(expected),
             day(-delivered) if delivered is not None else None, carrier)
            for number, account, item, pence, status, ordered, expected, delivered, carrier in _ORDERS
        ],
    )  # fmt: skip
    repository.execute_many(
        "INSERT INTO subscriptions (subscription_id, account_number, plan, monthly_pence, status, renews_on, "
        "ends_on) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (sub_id, account, plan, pence, status, day(renews), day(renews) if status != "active" else None)
            for sub_id, account, plan, pence, status, renews in _SUBSCRIPTIONS
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help=f"backend URL (default: {backend_url()})")
    parser.add_argument("--reset", action="store_true", help="empty the tables first")
    args = parser.parse_args(argv)
    repository = open_repository(args.url, seed_if_new=False)
    seed(repository, reset=args.reset)
    print(f"seeded {repository.dialect} backend: {len(CUSTOMERS)} customers, {len(_ORDERS)} orders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
