"""Where the app meets the network: the socket it listens on, and HEAD answered as GET."""

import errno
import socket
from typing import Any

from charlstm.errors import ServiceError

HOST_HINT = "give --host an address of this machine: 127.0.0.1 for it alone, 0.0.0.0 for every network"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), or ServiceError saying why not (in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # resolved first: create_server reports a name that resolves to nothing like any bind error
        socket.getaddrinfo(host or None, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:  # no such name, or no address at all (999.1.1.1)
        raise ServiceError(f"cannot listen on {host}: no such host or address ({exc.strerror})",
                           hint=HOST_HINT) from None
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:  # a real address, but another machine's
            raise ServiceError(f"cannot listen on {host}: it is not an address of this machine",
                               hint=HOST_HINT) from None
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                           hint="another server may be there: choose another --port") from None
    # Accepted connections copy the listener's proto, and asyncio turns Nagle's algorithm off
    # only on a socket whose proto says TCP. With create_server's 0, a stream's first event,
    # written just after the headers on a kept-alive connection, waited for the client's
    # delayed ACK: about 40 ms more to the first character.
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=sock.detach())


class HeadAsGet:
    """HEAD answered as GET, without the body, wherever GET is answered.

    FastAPI routes only the methods a route names, so without this ``HEAD /`` (what monitors
    and link checkers send) is a 405; HTTP wants HEAD wherever GET is. No GET route streams,
    so the body dropped here is a small one.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # only the body's end goes out, empty
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
