"""Page tokens (AIP-158): opaque, and valid only for the request that returned them."""

from __future__ import annotations

import base64

import pytest
from google.longrunning import operations_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.generated.dcc.v1 import dcc_pb2
from twin.generated.fleet.v1 import fleet_pb2
from twin.services.errors import ApiError
from twin.services.pagination import page_start, page_token


def refused(request) -> None:
    with pytest.raises(ApiError) as e:
        page_start(request)
    assert e.value.field == "page_token" and e.value.code.name == "INVALID_ARGUMENT"


@settings(deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.integers(0, 2**40), st.integers(1, 1000), st.integers(1, 1000))
def test_a_token_continues_only_its_own_filter(filter_a, filter_b, position, size_a, size_b):
    token = page_token(fleet_pb2.ListHubsRequest(filter=filter_a, page_size=size_a), position)
    # page_size may change between pages; the filter may not.
    assert page_start(fleet_pb2.ListHubsRequest(filter=filter_a, page_size=size_b, page_token=token)) == (position,)
    if filter_b != filter_a:
        refused(fleet_pb2.ListHubsRequest(filter=filter_b, page_token=token))


def test_tokens_are_bound_to_the_method_and_refuse_hand_made_or_edited_ones():
    token = page_token(fleet_pb2.ListBranchesRequest(), 5)
    assert page_start(fleet_pb2.ListBranchesRequest(page_token=token)) == (5,)
    refused(fleet_pb2.ListHubsRequest(page_token=token))  # another method's token
    refused(operations_pb2.ListOperationsRequest(page_token=token))
    refused(fleet_pb2.ListHubsRequest(page_token=base64.urlsafe_b64encode(b"h:25").decode()))  # the old format
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[8] ^= 1  # position 5 -> 4
    refused(fleet_pb2.ListBranchesRequest(page_token=base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")))
    for junk in ["x", "%%%", "\u0661\u0662", "A" * 500, token[:-1]]:
        refused(fleet_pb2.ListBranchesRequest(page_token=junk))
    q = page_token(dcc_pb2.ListQuarantinedRequestsRequest(user_id="is"), 7)
    assert page_start(dcc_pb2.ListQuarantinedRequestsRequest(user_id="is", page_token=q)) == (7,)
    refused(dcc_pb2.ListQuarantinedRequestsRequest(user_id="gs", page_token=q))
    assert page_start(fleet_pb2.ListHubsRequest()) is None
