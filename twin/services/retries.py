"""AIP-155 request ids at the API's edge: claiming a request's id in the engine's RequestLedger,
and the status of an id that may not be used (see twin.engine.requests for the rules)."""

from __future__ import annotations

from typing import Any

from twin.engine.requests import RequestIdError, RequestKey, RequestLedger, Seen, request_digest
from twin.services.dcc.errors import request_id_refusal
from twin.services.dcc.requests import MAX_REQUEST_ID
from twin.services.errors import ApiError, from_dcc, invalid
from twin.services.identity import current_identity


def request_id_error(e: RequestIdError) -> ApiError:
    """AIP-193 status of a request id that may not be used (twin.services.dcc.errors.request_id_refusal)."""
    return from_dcc(request_id_refusal(e))


def check_request_id(request_id: str, *, required: bool) -> None:
    if (required and not request_id) or len(request_id) > MAX_REQUEST_ID:
        raise invalid("request_id", f"give a unique id of 1 to {MAX_REQUEST_ID} characters")


def claim(ledger: RequestLedger, key: RequestKey) -> Seen | None:
    """`ledger.claim` with its refusals as API errors."""
    try:
        return ledger.claim(key.user, key.request_id, key.digest)
    except RequestIdError as e:
        raise request_id_error(e) from None


def claim_request(ledger: RequestLedger, request: Any) -> tuple[RequestKey | None, Seen | None]:
    """For a request message with an optional `request_id` field: (None, None) without one; else
    its key, claimed, and for a retry of an accepted request the first request's Seen. The digest
    is of the method's request type and the whole request but its id, so the same id with anything
    changed (or sent to another method) is refused."""
    check_request_id(request.request_id, required=False)
    if not request.request_id:
        return None, None
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField("request_id")
    digest = request_digest(body.DESCRIPTOR.full_name, body.SerializeToString(deterministic=True))
    key = RequestKey(current_identity().user_id, request.request_id, digest)
    return key, claim(ledger, key)
