"""mDNS discovery with python-zeroconf's asyncio API.

What mDNS says is a hint and nothing more: an address where some peer id may
listen. The daemon trusts a peer only after a signed exchange. Parsing a
service record (`parse_service`) is separate from I/O and never raises: a
record of another office, another program or garbage is simply not a hint.

Each daemon registers its own instance name and its own host name, both from
its peer id: a host name shared by two instances on one machine would let one
instance's goodbye delete the other's address (docs/daemon.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zeroconf import DNSQuestionType, InterfaceChoice, IPVersion, NonUniqueNameException, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from peerbackup.core.identity import is_peer_id
from peerbackup.errors import DuplicatePeer
from peerbackup.logs import event
from peerbackup.net.envelope import PROTOCOL_VERSION

SERVICE_TYPE = "_peerbackup._tcp.local."
DUPLICATE_PROBE_MS = 1500


@dataclass(frozen=True)
class ServiceHint:
    peer_id: str
    office: str
    name: str
    addresses: tuple[str, ...]  # host:port


def instance_name(peer_id: str) -> str:
    return f"peerbackup-{peer_id.lower()}.{SERVICE_TYPE}"


def host_name(peer_id: str) -> str:
    return f"pb-{peer_id.lower()}.local."


def parse_service(properties: dict[bytes, bytes | None], ips: list[str], port: int | None,
                  office: str) -> ServiceHint | None:
    """A hint from one resolved service record, or None when it is not a usable hint for our office."""
    try:
        props = {k.decode("ascii"): (v or b"").decode("utf-8") for k, v in properties.items()}
    except (UnicodeDecodeError, AttributeError):
        return None
    peer_id, their_office, version = props.get("id", ""), props.get("office", ""), props.get("v", "")
    if their_office != office or not is_peer_id(peer_id) or version != str(PROTOCOL_VERSION):
        return None
    if not port or not 0 < port < 65536:
        return None
    addrs = []
    for ip in ips:
        try:
            parsed = ipaddress.ip_address(ip)
        except ValueError:
            continue
        addrs.append(f"[{ip}]:{port}" if parsed.version == 6 else f"{ip}:{port}")
    if not addrs:
        return None
    return ServiceHint(peer_id=peer_id, office=office, name=props.get("name", "")[:64], addresses=tuple(addrs))


class Discovery:
    """Announce this peer and report hints for the others of our office."""

    def __init__(self, peer_id: str, name: str, office: str, port: int, ips: list[str], interface: str | None,
                 on_hint: Callable[[ServiceHint], None], on_duplicate: Callable[[str], None],
                 log: logging.Logger) -> None:
        self.peer_id = peer_id
        self.name = name
        self.office = office
        self.port = port
        self.ips = ips
        self.interface = interface
        self.on_hint = on_hint
        self.on_duplicate = on_duplicate
        self.log = log
        self.aiozc: AsyncZeroconf | None = None
        self.browser: AsyncServiceBrowser | None = None
        self.info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        interfaces: Any = [self.interface] if self.interface else InterfaceChoice.All
        self.aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self.info = AsyncServiceInfo(
            SERVICE_TYPE, instance_name(self.peer_id), port=self.port, server=host_name(self.peer_id),
            addresses=[socket.inet_aton(ip) for ip in self.ips],
            properties={"id": self.peer_id, "office": self.office, "v": str(PROTOCOL_VERSION), "name": self.name},
        )
        # zeroconf refuses a name only when it is already in its cache, which a fresh instance's
        # is not: ask for our own name first, so a copied home fails loudly instead of both
        # daemons answering for one name.
        # QM: a unicast answer could be delivered to another instance's socket on this machine.
        taken = await AsyncServiceInfo(SERVICE_TYPE, instance_name(self.peer_id)).async_request(
            self.aiozc.zeroconf, DUPLICATE_PROBE_MS, question_type=DNSQuestionType.QM)
        try:
            if taken:
                raise NonUniqueNameException(instance_name(self.peer_id))
            await (await self.aiozc.async_register_service(self.info, allow_name_change=False))
        except NonUniqueNameException:
            await self.aiozc.async_close()
            raise DuplicatePeer(instance_name(self.peer_id)) from None
        self.browser = AsyncServiceBrowser(self.aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])
        event(self.log, "mdns.started", interface=self.interface or "all", instance=instance_name(self.peer_id),
              host=host_name(self.peer_id))

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            return
        task = asyncio.ensure_future(self._resolve(zeroconf, service_type, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        try:
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(zeroconf, 3000, question_type=DNSQuestionType.QM):
                return
            hint = parse_service(dict(info.properties), info.parsed_addresses(IPVersion.V4Only), info.port, self.office)
        except Exception as exc:  # a malformed record must never reach the loop
            event(self.log, "mdns.bad_record", logging.DEBUG, name=name, reason=repr(exc))
            return
        if hint is not None and hint.peer_id == self.peer_id:
            mine = {f"{ip}:{self.port}" for ip in self.ips}
            if not set(hint.addresses) <= mine:
                # The start-up probe can miss a copy that was still announcing; this catches it later.
                self.on_duplicate(f"{instance_name(self.peer_id)} (at {', '.join(hint.addresses)})")
            return
        if hint is not None:
            event(self.log, "mdns.hint", logging.DEBUG, peer=hint.peer_id, addresses=",".join(hint.addresses))
            self.on_hint(hint)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.browser is not None:
            await self.browser.async_cancel()
        if self.aiozc is not None:
            # Unregistering sends the goodbye, so the others drop our record at once.
            await self.aiozc.async_unregister_all_services()
            await self.aiozc.async_close()
