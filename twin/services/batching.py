"""Natural batching of shard queries for the API: one call in flight per shard, and requests that
arrive meanwhile wait for the next call. Under light load a request goes alone (no added delay);
under heavy load batches grow, so Ray's per-call cost is shared by many requests."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from twin.engine.interface import ShardAccess
from twin.util.background import spawn


class HubFacts(Protocol):
    """A hub's service facts by dense hub id: the shard's answer ({"hub": premises or record,
    "result" and "tick" for a read, "error"}), from ShardBatcher or an API replica's shared memory."""

    async def call(self, hub: int, srv: str, fuel: str, record: bool, /) -> Any: ...


class ShardBatcher:
    def __init__(self, supervisor: ShardAccess, method: str):
        self.sup = supervisor
        self.method = method
        self.waiting: dict[int, list[tuple[Any, asyncio.Future]]] = {}
        self.busy: set[int] = set()

    async def call(self, hub: int, *args: Any) -> Any:
        local = self.sup.local_reads
        if local is not None:
            # The shard's columns are in shared memory on this node: microseconds, no Ray call.
            got = local.call(self.method, hub, *args)
            if got is not None:
                return got
        shard = self.sup.shard_of(hub)
        fut = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(shard, []).append(((hub, *args), fut))
        if shard not in self.busy:
            self.busy.add(shard)
            spawn(self._drain(shard), name=f"drain-{self.method}-{shard}")
        return await fut

    async def _drain(self, shard: int) -> None:
        batch: list[tuple[Any, asyncio.Future]] = []
        try:
            while self.waiting.get(shard):
                batch, self.waiting[shard] = self.waiting[shard], []
                try:
                    results = await getattr(self.sup.shards[shard], self.method).remote([a for a, _ in batch])
                except Exception as e:  # the error belongs to every request of the batch
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                if len(results) != len(batch):  # no result can be trusted to be its request's
                    raise ValueError(f"shard {shard} answered {len(results)} results to {len(batch)} requests")
                for (_, f), r in zip(batch, results, strict=True):
                    if f.done():
                        continue
                    if isinstance(r, BaseException):
                        f.set_exception(r)
                    else:
                        f.set_result(r)
        except BaseException as e:
            # Not one request's error (a shard answering the wrong number of results, the drain
            # cancelled): every request still waiting on this shard gets it, none waits forever.
            for _, f in [*batch, *self.waiting.pop(shard, [])]:
                if not f.done():
                    f.set_exception(e if isinstance(e, Exception) else RuntimeError(f"the shard call was stopped: {e!r}"))
            raise
        finally:
            self.busy.discard(shard)
