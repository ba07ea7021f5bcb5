"""HOST:PORT as the command line and config.toml give it, and the addresses a listener is reachable on."""

from __future__ import annotations

import ifaddr

from peerbackup.errors import UsageError

DEFAULT_PORT = 7420


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_ipv4() -> list[str]:
    """This machine's IPv4 addresses, loopback last: what a 0.0.0.0 listener is reachable on."""
    ips: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and ip.ip not in ips:
                ips.append(ip.ip)
    return sorted(ips, key=lambda ip: ip.startswith("127.")) or ["127.0.0.1"]
