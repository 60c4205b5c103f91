"""StateService: what an address owns, an object's dynamic fields, balances.

The list methods page as a full node pages them (sizes and byte limit below, with their
sources), with a page token valid only for the listing that issued it; owner and type
filters are compared at full address length, and a type without generics matches every
instantiation, as Sui filters.
"""

from __future__ import annotations

from typing import TypeVar

import betterproto2
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain.localnet import masks
from chain.localnet.ledger import OWNER_ADDRESS
from chain.localnet.naming import coin_inner, normalize_address
from chain.localnet.node import Localnet
from chain.localnet.replies import dynamic_field_proto, object_proto

#: List methods: `page_size` unset is 50, otherwise clamped to 1..1000, and a page also ends
#: once it holds 512 KiB (sui `crates/sui-rpc-api/src/grpc/v2/state_service/
#: list_owned_objects.rs`: DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_SIZE_BYTES; the same
#: 50/1000 rule is documented for ListDynamicFields and ListBalances in `state_service.proto`).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE_BYTES = 512 * 1024


class StateService:
    """`sui.rpc.v2.StateService` over one stand-in chain."""

    def __init__(self, net: Localnet) -> None:
        self.net = net

    async def list_owned_objects(
        self, request: pb.ListOwnedObjectsRequest
    ) -> pb.ListOwnedObjectsResponse:
        """One page of the objects `owner` owns (of `object_type`, when given).

        Raises:
            ValueError: no owner, or a page token from another listing (INVALID_ARGUMENT).
        """
        if not request.owner:
            raise ValueError("owner is required")
        owner = normalize_address(request.owner)
        type_filter = _normalize_type(request.object_type) if request.object_type else None
        mask = masks.tree_for("ListOwnedObjects", request.read_mask, pb.Object)
        objects = [
            masks.apply(object_proto(o), mask)
            for o in self.net.ledger.owned_by(owner)
            if o.owner_kind == OWNER_ADDRESS and _type_matches(o.type, type_filter)
        ]
        page, token = _page(
            objects, request.page_size, request.page_token, f"{owner}|{type_filter or ''}"
        )
        return pb.ListOwnedObjectsResponse(objects=page, next_page_token=token)

    async def list_dynamic_fields(
        self, request: pb.ListDynamicFieldsRequest
    ) -> pb.ListDynamicFieldsResponse:
        """One page of the dynamic fields of `parent` (a dynamic object field with its child's
        ID and type, as a full node lists an ObjectTable's entries).

        Raises:
            ValueError: no parent, or a page token from another listing (INVALID_ARGUMENT).
        """
        if not request.parent:
            raise ValueError("parent is required")
        parent = normalize_address(request.parent)
        mask = masks.tree_for("ListDynamicFields", request.read_mask, pb.DynamicField)
        fields = [
            masks.apply(dynamic_field_proto(f, self.net.ledger.get), mask)
            for f in self.net.ledger.dynamic_fields(parent)
        ]
        page, token = _page(fields, request.page_size, request.page_token, parent)
        return pb.ListDynamicFieldsResponse(dynamic_fields=page, next_page_token=token)

    def _balances(self, owner: str) -> dict[str, int]:
        totals: dict[str, int] = {}
        for obj in self.net.ledger.owned_by(normalize_address(owner)):
            inner = coin_inner(obj.type)
            if inner is not None and obj.owner_kind == OWNER_ADDRESS:
                totals[inner] = totals.get(inner, 0) + int.from_bytes(obj.contents[32:40], "little")
        return totals

    async def get_balance(self, request: pb.GetBalanceRequest) -> pb.GetBalanceResponse:
        coin = _normalize_type(request.coin_type or "0x2::sui::SUI")
        total = self._balances(request.owner or "").get(coin, 0)
        return pb.GetBalanceResponse(
            balance=pb.Balance(coin_type=coin, balance=total, coin_balance=total, address_balance=0)
        )

    async def list_balances(self, request: pb.ListBalancesRequest) -> pb.ListBalancesResponse:
        """One page of the owner's coin balances, one per coin type, by type.

        Raises:
            ValueError: no owner, or a page token from another listing (INVALID_ARGUMENT).
        """
        if not request.owner:
            raise ValueError("owner is required")
        balances = [
            pb.Balance(coin_type=c, balance=v, coin_balance=v, address_balance=0)
            for c, v in sorted(self._balances(request.owner).items())
        ]
        owner = normalize_address(request.owner)
        page, token = _page(balances, request.page_size, request.page_token, owner)
        return pb.ListBalancesResponse(balances=page, next_page_token=token)


T = TypeVar("T", bound=betterproto2.Message)


def _page(
    items: list[T], page_size: int | None, page_token: bytes | None, scope: str
) -> tuple[list[T], bytes | None]:
    """One page of `items` (already masked) and the token of the next. A token is only valid
    for the listing it came from (`scope`: owner and type, or parent), as a full node refuses
    a token from another query with INVALID_ARGUMENT."""
    start = 0
    if page_token:
        token_scope, _, offset = page_token.decode(errors="replace").rpartition("#")
        if token_scope != scope or not offset.isdigit():
            raise ValueError("invalid page_token")
        start = int(offset)
    size = PAGE_SIZE if page_size is None else min(max(page_size, 1), MAX_PAGE_SIZE)
    page: list[T] = []
    used = 0
    for item in items[start:]:
        page.append(item)
        used += len(bytes(item))
        if len(page) >= size or used >= MAX_PAGE_BYTES:
            break
    end = start + len(page)
    return page, (f"{scope}#{end}".encode() if end < len(items) else None)


def _normalize_type(type_: str) -> str:
    """Addresses in a type string to full length: `0x2::coin::Coin<0x2::sui::SUI>` etc."""
    out, i = [], 0
    while i < len(type_):
        if type_.startswith("0x", i):
            j = i + 2
            while j < len(type_) and type_[j] in "0123456789abcdefABCDEF":
                j += 1
            out.append(normalize_address(type_[i:j]))
            i = j
        else:
            out.append(type_[i])
            i += 1
    return "".join(out)


def _type_matches(type_: str, wanted: str | None) -> bool:
    """Exact type, or a type without generics matching any instantiation (as Sui filters)."""
    if wanted is None:
        return True
    return type_ == wanted or ("<" not in wanted and type_.startswith(wanted + "<"))
