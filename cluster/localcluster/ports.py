"""TCP listeners of this machine (its network namespace), read from /proc/net/tcp and tcp6: the
ports a new cluster may take, and who holds a port that a cluster needs."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the socket state /proc/net/tcp gives a listener

# A new cluster's ports come from this range. kwokctl's own choice counts down from 32767, so every
# new cluster (a test run's, say) would take the ports of a stopped one, which then could not start
# again; picked at random, two clusters' ports hardly ever meet.
FIRST_PORT, LAST_PORT = 20000, 29999


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    inode: int  # the socket's inode: /proc/PID/fd/N links to socket:[INODE] in its owner


def listeners(proc_net: Path = Path("/proc/net")) -> list[Listener]:
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = (proc_net / table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue  # a kernel without IPv6
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            found.append(Listener(decode_address(address, family), int(port, 16), int(fields[9])))
    return found


def decode_address(hex_address: str, family: int) -> str:
    """/proc/net/tcp writes an address as 32-bit words, each in the machine's (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, words)


def pick_free(count: int, taken: set[int], rng: random.Random | None = None) -> list[int]:
    """COUNT different ports of FIRST_PORT-LAST_PORT that nothing listens on (TAKEN: those that something does)."""
    rng = rng or random.Random()
    free = LAST_PORT - FIRST_PORT + 1 - len({p for p in taken if FIRST_PORT <= p <= LAST_PORT})
    if free < count:
        raise RuntimeError(f"only {free} free ports in {FIRST_PORT}-{LAST_PORT}, {count} needed")
    picked: list[int] = []
    while len(picked) < count:
        port = rng.randint(FIRST_PORT, LAST_PORT)
        if port not in taken and port not in picked:
            picked.append(port)
    return picked


def owners(inodes: set[int]) -> dict[int, int]:
    """Socket inode -> the pid of a process that holds it, for the processes this one may look into."""
    found: dict[int, int] = {}
    wanted = {f"socket:[{inode}]": inode for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = os.listdir(proc / "fd")
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                inode = wanted.get(os.readlink(proc / "fd" / fd))
            except OSError:
                continue
            if inode is not None:
                found.setdefault(inode, int(proc.name))
    return found
