"""Business rules as pure functions: what the backend's data means for the caller.

The decision is made here once, from the database's rows; the bot's replies only choose how to say
it (their tone), never whether a refund is granted or a cancellation takes effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from actions.backend.repository import Order, Ticket

__all__ = ["REFUND_WINDOW_DAYS", "REFUND_PAYOUT_DAYS", "RefundDecision", "refund_decision"]

# A delivered order can be refunded up to this many days after delivery; a lost one always.
REFUND_WINDOW_DAYS = 30
# What every refund reply promises (working days until the money is back).
REFUND_PAYOUT_DAYS = "5 to 7"


@dataclass(frozen=True)
class RefundDecision:
    """``code`` is one of: eligible, already_open, already_refunded, outside_window, not_delivered."""

    code: str
    amount_pence: int
    existing: Ticket | None = None

    @property
    def eligible(self) -> bool:
        return self.code == "eligible"


def refund_decision(order: Order, today: date, open_refund: Ticket | None) -> RefundDecision:
    if open_refund is not None:
        return RefundDecision("already_open", order.total_pence, open_refund)
    if order.status == "refunded":
        return RefundDecision("already_refunded", order.total_pence)
    if order.status == "lost":
        return RefundDecision("eligible", order.total_pence)
    if order.status == "delivered" and order.delivered_on is not None:
        within = (today - order.delivered_on).days <= REFUND_WINDOW_DAYS
        return RefundDecision("eligible" if within else "outside_window", order.total_pence)
    return RefundDecision("not_delivered", order.total_pence)
