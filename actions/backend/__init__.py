"""The contact-center backend the custom actions use: one repository over SQLite or PostgreSQL.

``policy`` holds the business rules (refund eligibility, number formats) as pure functions, so every
tone of every reply states the same decision; ``repository`` reads and writes; ``seed`` creates the
schema (``schema.sql``) and the demo data.
"""

from actions.backend.repository import (
    BACKEND_URL_ENV,
    BackendError,
    BackendUnavailable,
    Customer,
    Order,
    Repository,
    Subscription,
    Ticket,
    backend_url,
    open_repository,
)

__all__ = [
    "BACKEND_URL_ENV",
    "BackendError",
    "BackendUnavailable",
    "Customer",
    "Order",
    "Repository",
    "Subscription",
    "Ticket",
    "backend_url",
    "open_repository",
]
