"""Checks ``xrouter serve`` runs before it starts anything, so a wrong setting is one line.

Each check raises ``ConfigurationError`` with a message that names the setting (and the route,
or the address) at fault; the command prints it and exits with status 2, before the banner.
"""

from __future__ import annotations

import contextlib
import socket

from xrouter.providers.registry import enabled_provider_names
from xrouter.routing.routes import RouteConfig, RoutesError, compile_routes, read_routes_file
from xrouter.settings import ConfigurationError, Settings


def check_before_serving(settings: Settings) -> None:
    """Routes compile against the providers this configuration enables; the address is free."""
    check_routes(settings)
    check_address(settings.host, settings.port)


def check_routes(settings: Settings) -> None:
    """The routes of ``XROUTER_ROUTES`` and the routes file, as the gateway will load them."""
    from_file: dict[str, RouteConfig] = {}
    if settings.routes_file is not None:
        try:
            from_file = read_routes_file(settings.routes_file)
        except RoutesError as error:
            raise ConfigurationError(f"XROUTER_ROUTES_FILE: {error}") from None
    # As at load: a route of the file replaces the setting's route of the same name.
    routes = {**settings.routes, **from_file}
    try:
        compile_routes(routes, enabled_provider_names(settings))
    except RoutesError as error:
        source = "XROUTER_ROUTES_FILE" if error.route in from_file else "XROUTER_ROUTES"
        raise ConfigurationError(f"{source}: {error}") from None


def check_address(host: str, port: int) -> None:
    """Bind every address ``host`` resolves to, as the server will, and let go at once."""
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ConfigurationError(
            f"XROUTER_HOST: cannot resolve '{host}' ({error.strerror})"
        ) from None
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as sock:
            # The options asyncio's server sets, so a port the server could take passes here.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as error:
                reason = error.strerror or str(error)
                raise ConfigurationError(
                    f"XROUTER_PORT: cannot listen on {_show(address)} ({reason})"
                ) from None


def _show(address: tuple[object, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
