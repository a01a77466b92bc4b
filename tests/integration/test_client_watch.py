"""The client's self-healing watch against the real server."""

import asyncio


async def test_watch_forever_lists_then_follows(client, ns):
    await client.create("configmaps", {"metadata": {"name": "a"}, "data": {"k": "1"}}, ns)
    events = []

    async def consume():
        async for ev in client.watch_forever("configmaps", ns):
            events.append((ev["type"], (ev["object"].get("metadata") or {}).get("name")))
            if ev["type"] == "DELETED":
                return

    task = asyncio.create_task(consume())
    while ("SYNCED", None) not in events:
        await asyncio.sleep(0.05)
    await client.patch("configmaps", "a", {"data": {"k": "2"}}, ns)
    await client.delete("configmaps", "a", ns)
    await asyncio.wait_for(task, 30)
    assert events == [("ADDED", "a"), ("SYNCED", None), ("MODIFIED", "a"), ("DELETED", "a")]
