"""Upkeep a long-running cluster needs from its API server: etcd history is compacted so it
does not grow without bound (keeping one interval of history, so watches that reconnect
within it can resume), and the database is defragmented now and then to give the space
back. Event expiry needs no task: Events are written with an etcd lease."""

from __future__ import annotations

import asyncio
import logging
import time

from apiserver.config import APIServerConfig
from apiserver.storage import Storage

log = logging.getLogger(__name__)


class Housekeeping:
    def __init__(self, storage: Storage, config: APIServerConfig):
        self.storage = storage
        self.config = config
        self.last_compacted = 0

    async def compact_once(self, previous: int) -> int:
        """Compact to ``previous`` (the revision seen one interval ago); the current
        revision back, for the next round."""
        current = await self.storage.current_revision()
        if 0 < previous < current and previous > self.last_compacted:
            await self.storage.compact(previous)
            self.last_compacted = previous
            log.info("compacted etcd history up to revision %d", previous)
        return current

    async def run(self) -> None:
        interval = self.config.compaction_interval_seconds
        previous = 0
        last_defrag = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                previous = await self.compact_once(previous)
                if time.monotonic() - last_defrag >= self.config.defrag_interval_seconds:
                    await self.storage.defragment()
                    last_defrag = time.monotonic()
                    log.info("defragmented etcd")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping: %s", exc)


__all__ = ["Housekeeping"]
