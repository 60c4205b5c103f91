"""MovePackageService: the signatures of the published packages' functions and types.

The lookups are `chain.localnet.packages`'; this module turns a request into one and the
lookup's failures into the statuses a full node answers with (an unknown package or datatype
NOT_FOUND, an unknown module or function INTERNAL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import betterproto2
import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError

from chain.localnet import packages
from chain.localnet.naming import normalize_address
from chain.localnet.node import Localnet

T = TypeVar("T", bound=betterproto2.Message)


class MovePackageService:
    """`sui.rpc.v2.MovePackageService` over one stand-in chain."""

    def __init__(self, net: Localnet) -> None:
        self.net = net

    def _metadata_call(self, request: Any, *fields: str) -> list[str]:
        values = [getattr(request, f) for f in fields]
        for name, value in zip(fields, values, strict=True):
            if not value:
                raise ValueError(f"missing {name}")
        values[0] = normalize_address(values[0])
        return values

    async def get_package(self, request: pb.GetPackageRequest) -> pb.GetPackageResponse:
        (package_id,) = self._metadata_call(request, "package_id")
        return pb.GetPackageResponse(package=self._metadata(self.net.packages.package, package_id))

    async def get_datatype(self, request: pb.GetDatatypeRequest) -> pb.GetDatatypeResponse:
        key = self._metadata_call(request, "package_id", "module_name", "name")
        return pb.GetDatatypeResponse(datatype=self._metadata(self.net.packages.datatype, *key))

    async def get_function(self, request: pb.GetFunctionRequest) -> pb.GetFunctionResponse:
        """The signature of a function of a published package (clients encode arguments
        from it; the TypeScript SDK reads the WAL type from `staking::stake_with_pool`)."""
        key = self._metadata_call(request, "package_id", "module_name", "name")
        return pb.GetFunctionResponse(function=self._metadata(self.net.packages.function, *key))

    @staticmethod
    def _metadata(lookup: Callable[..., T], *key: str) -> T:
        try:
            return lookup(*key)
        except packages.MetadataNotFound as exc:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, str(exc)) from None
        except packages.MetadataMissing as exc:
            raise GRPCError(grpclib.const.Status.INTERNAL, str(exc)) from None
