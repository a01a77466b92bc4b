"""WebSocket subprotocols that are not HTTP tokens.

Kubernetes names the port-forward tunnel ``SPDY/3.1+portforward.k8s.io`` (KEP-4006), and
'/' is a separator, not a token character. The websockets library checks and parses
``Sec-WebSocket-Protocol`` as a list of tokens on both ends, so as it comes it refuses to
offer that name (client) and answers a client offering it with a 400 (uvicorn's sans-I/O
server protocol hands the handshake to websockets). Both checks are switched off here; the
values are split on commas and compared as plain strings, as Go's gorilla/websocket does."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


def websocket_subprotocols(offered: list[str]) -> dict[str, Any]:
    """Keyword arguments for ``websockets.asyncio.client.connect`` that offer ``offered``
    verbatim and accept an answer that is one of them."""
    from websockets.asyncio.client import ClientConnection
    from websockets.exceptions import NegotiationError

    wanted = list(offered)

    class _Connection(ClientConnection):
        def __init__(self, protocol: Any, *args: Any, **kwargs: Any):
            protocol.available_subprotocols = wanted

            def process_subprotocol(headers: Any) -> str | None:
                values = [v.strip() for h in headers.get_all("Sec-WebSocket-Protocol")
                          for v in h.split(",") if v.strip()]
                if not values:
                    return None
                if len(values) > 1 or values[0] not in wanted:
                    raise NegotiationError(f"unsupported subprotocol: {', '.join(values)}")
                return values[0]

            protocol.process_subprotocol = process_subprotocol
            super().__init__(protocol, *args, **kwargs)

    return {"subprotocols": None, "create_connection": _Connection}


class LenientWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol (its ``auto`` choice) without websockets' own
    subprotocol parsing: uvicorn already gives the app the offers split on commas and
    writes the answer header from ``websocket.accept`` itself. Pass as ``ws=`` to
    ``uvicorn.Config``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conn.process_subprotocol = lambda headers: None


__all__ = ["websocket_subprotocols", "LenientWebSocketProtocol"]
