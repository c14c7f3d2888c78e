"""Where an expert might reach this computer: the candidate addresses an invitation lists."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import sys
from pathlib import Path

from engine.tickets import Address

__all__ = ["candidate_addresses", "local_addresses"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Documentation prefixes (RFC 5737, RFC 3849): "connecting" a UDP socket there sends nothing
# but makes the kernel pick the source address it would route through.
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))
_SIOCGIFADDR = 0x8915  # Linux <linux/sockios.h>


def _linux_addresses() -> set[str]:
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(str(ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))))
    if sys.platform.startswith("linux"):
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    request = struct.pack("256s", name.encode()[:15])
                    reply = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, request)
                    found.add(socket.inet_ntoa(reply[20:24]))
    return found


def _portable_addresses() -> set[str]:
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    for family, target in _PROBES:
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            found.add(str(probe.getsockname()[0]))
    return found


def local_addresses() -> list[str]:
    """This host's addresses another machine could use: IPv4 first, no loopback or link-local."""
    usable: list[IPAddress] = []
    for text in _linux_addresses() | _portable_addresses():
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            continue
        if not (address.is_loopback or address.is_link_local or address.is_unspecified
                or address.is_multicast):
            usable.append(address)
    usable.sort(key=lambda a: (a.version, a.packed))
    return [str(a) for a in usable]


def candidate_addresses(port: int) -> list[Address]:
    """The addresses to put in a ticket, best first; loopback last, for the same machine."""
    hosts = [*local_addresses(), "127.0.0.1"]
    return [Address(host=host, port=port) for host in hosts]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and the demo, which bind at once)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
