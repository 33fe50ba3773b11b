"""A budget of bytes shared by one process's requests: how much may be decoded at once.

A request's decoded check-ins take many times its body's size in memory (a 33 MB
body of tiny apps took about 400 MB), and every request decodes at the same time
as the others: sixteen such bodies took 3.9 GB. Each request holds as many bytes of
the budget as its decompressed body has, from before it decodes until its items are
applied; the others wait their turn, first come first served. A body larger than
the whole budget waits for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes (at most the whole budget) while the block runs."""
        size = min(size, self.capacity)
        await self._take(size)
        try:
            yield
        finally:
            self._give(size)

    async def _take(self, size: int) -> None:
        if not self._waiting and self.free >= size:
            self.free -= size
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((size, turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # granted as it was cancelled: give it back
                self._give(size)
            else:
                self._waiting.remove((size, turn))
                self._wake()
            raise

    def _give(self, size: int) -> None:
        self.free += size
        self._wake()

    def _wake(self) -> None:
        # In order: a large request at the head is not overtaken by smaller ones for ever.
        while self._waiting and self._waiting[0][0] <= self.free:
            size, turn = self._waiting.popleft()
            self.free -= size
            turn.set_result(None)
