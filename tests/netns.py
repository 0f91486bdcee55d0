"""Network namespaces for partition tests: a worker on its own network, cut off by taking its link down.

Each ``Namespace`` gets a veth pair: one end inside it (``10.213.X.2/30``),
the other in the host's namespace (``10.213.X.1/30``). The machine's
PostgreSQL and Redis listen on 127.0.0.1 only, so ``forward(port)`` starts a
``TcpProxy`` in the host namespace, bound to the host end's address, in front
of the loopback service; processes in the namespace use
``namespace.address_of(proxy)``. ``cut()`` takes the host end of the link down:
packets are dropped both ways, open TCP connections hang rather than reset, as
behind a real partition; ``heal()`` brings it back up.

Needs root (CAP_NET_ADMIN) and the ``ip`` command (Debian: iproute2);
``unavailable()`` says why namespaces cannot be made here, for a skip.
"""
from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import uuid
from functools import cache

from tests.tcp_proxy import TcpProxy


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@cache
def unavailable() -> str | None:
    """None when namespaces and veth pairs can be made here; else the reason."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"ngprobe{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()} (needs root / CAP_NET_ADMIN)"
    try:
        link = _ip("link", "add", f"{probe[:9]}h", "type", "veth", "peer", "name", f"{probe[:9]}w", "netns", probe,
                   check=False)
        if link.returncode != 0:
            return f"cannot create a veth pair: {link.stderr.strip()}"
        _ip("link", "del", f"{probe[:9]}h", check=False)
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class Namespace:
    """A network namespace linked to the host by a veth pair; close() removes both."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"netgrow-{tag}"
        self.host_link, inner = f"ngh{tag}", f"ngw{tag}"
        subnet = random.randrange(0, 1 << 14)  # a random /30 in 10.213.0.0/16: parallel runs rarely collide
        base = (10 << 24) | (213 << 16) | (subnet << 2)
        self.host_address = _dotted(base + 1)
        self.inner_address = _dotted(base + 2)
        self._proxies: list[TcpProxy] = []
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", inner, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            _ip("-n", self.name, "addr", "add", f"{self.inner_address}/30", "dev", inner)
            _ip("-n", self.name, "link", "set", inner, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.name]

    def forward(self, port: int, host: str = "127.0.0.1") -> TcpProxy:
        """A proxy on the host end of the link forwarding to ``host:port`` (a loopback service)."""
        proxy = TcpProxy(host, port, listen_host=self.host_address)
        self._proxies.append(proxy)
        return proxy

    def cut(self) -> None:
        _ip("link", "set", self.host_link, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_link, "up")

    def close(self) -> None:
        for proxy in self._proxies:
            proxy.close()
        with contextlib.suppress(subprocess.SubprocessError):
            _ip("link", "del", self.host_link, check=False)
            _ip("netns", "del", self.name, check=False)


def _dotted(address: int) -> str:
    return ".".join(str((address >> shift) & 255) for shift in (24, 16, 8, 0))
