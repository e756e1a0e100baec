"""Hand-off transports: moving a live call to a human outside the media stream.

Twilio needs a REST call to replace the stream's TwiML with a ``<Dial>``; the other protocols hand
off in-band (their cores send the hand-off message), so only Twilio has a transport here.
"""

from __future__ import annotations

import logging

import httpx

from connectors.protocols.base import TransferRequested
from emotune.errors import DialogueError

__all__ = ["TwilioRestTransfer"]

logger = logging.getLogger(__name__)


class TwilioRestTransfer:
    """Applies a transfer to a live Twilio call: ``POST .../Calls/{CallSid}.json`` with the TwiML.

    Without an auth token nothing is sent (the TwiML is still in the call log), because the REST
    API needs the account's credentials. ``base_url`` is configurable for a regional edge.
    """

    def __init__(self, auth_token: str | None, base_url: str = "https://api.twilio.com", timeout_s: float = 10.0):
        self.auth_token = auth_token
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    async def __call__(self, transfer: TransferRequested) -> bool:
        """True when Twilio accepted the new TwiML (the call was transferred); False when nothing was
        sent (no credentials); DialogueError when Twilio refused or could not be reached."""
        if not self.auth_token:
            logger.warning(
                "transfer of %s to %s not applied: no Twilio auth token (TwiML is in the call log)",
                transfer.call_id, transfer.target,
            )
            return False
        url = f"{self.base_url}/2010-04-01/Accounts/{transfer.account_id}/Calls/{transfer.call_id}.json"
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            try:
                response = await client.post(
                    url, data={"Twiml": transfer.twiml}, auth=(transfer.account_id, self.auth_token)
                )
            except httpx.HTTPError as exc:
                raise DialogueError(f"Twilio transfer request failed: {exc}") from exc
        if response.status_code >= 300:
            raise DialogueError(f"Twilio refused the transfer: HTTP {response.status_code} {response.text[:200]}")
        return True
