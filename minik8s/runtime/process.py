"""The life of a daemon process around its manager, shared by every component: SIGTERM and
SIGINT end it cleanly with 0; losing leadership ends it with 1, so its supervisor restarts it
with clean caches (as Kubernetes components do); any other failure is logged and is 1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any, Awaitable, Callable

from minik8s.runtime.manager import LeadershipLost


async def run_until_signalled(main: Callable[[], Awaitable[Any]], log: logging.Logger,
                              cleanup: Callable[[], Awaitable[Any]] | None = None) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await main()
        return 0
    except asyncio.CancelledError:
        if stopping:
            log.info("stopping")
            return 0
        raise
    except LeadershipLost as exc:
        log.error("%s", exc)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if cleanup is not None:
            with contextlib.suppress(Exception):
                await cleanup()


def run_daemon(run: Callable[[Any], Awaitable[int]], args: Any, log: logging.Logger,
               name: str) -> int:
    """``asyncio.run(run(args))`` with logging set up from ``args.verbose``; a failure is
    one logged line (a traceback only with ``--verbose``) and exit code 1."""
    configure_logging(args.verbose)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.error("%s failed: %s", name, exc, exc_info=args.verbose)
        return 1


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)


__all__ = ["run_until_signalled", "run_daemon", "configure_logging"]
