"""Authenticated frames for thespian's TCP transport: nothing is unpickled before its MAC checks out.

thespian's TCP transport (admin, every actor, the logger) frames a message as `b"<len>>" + pickle`
and unpickles whatever arrives, so anyone who can connect to one of its ports (every local user:
loopback is no boundary) can run code as the runtime's user. thespian looks its serializer up at
each call (`TCPTransport.serializer`, a module global, and the `TCPTransport.serializer(intent)`
method), so `install` swaps in `SignedPickle`. Every frame is then

    size tag (16 bytes) + MAC(secret, body) (32 bytes) + body (the pickle)

with keyed BLAKE2b as the MAC (a MAC by design; 2.3 us against 8.2 us for HMAC-SHA256 on a
240-byte frame here). The size tag covers the announced length and is checked when its 16 bytes
arrive, so a stranger announcing a gigabyte is cut off at once; the MAC is checked, in constant
time, against the secrets this process holds before `pickle.loads` sees a byte. A frame that
fails is dropped (thespian closes the socket) and logged, at most once per `log_interval`
seconds per process.

The secret (32 bytes from `secrets`) is made by each runtime at boot and reaches its actor
processes without touching the network: thespian forks them (`fork` start method), so they
inherit this module's state. A named runtime also keeps it, hex, in its discovery record
(0600, in a 0700 directory), which is how `thespian-otp tree` and `Runtime.attach` get it.

thespian's two fixed acknowledgement packets (`ACK`, `ACK+DATAERR`) stay unsigned: they are
recognised by their exact bytes and never unpickled; a forged one can only tell a sender that a
message it sent to the forger arrived. The transmit side signs with the secret of the actor
system the sending transport belongs to (keyed by its admin port), so one process can talk to
several runtimes, each with its own secret (`Runtime.attach` of several nodes).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pickle
import secrets
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from supervision.errors import ConfigError

TAG_BYTES = 32
#: A short tag of the announced length, checked as soon as its 16 bytes arrive: a stranger's
#: frame is dropped after ~30 bytes instead of being buffered up to the size it announces.
SIZE_TAG_BYTES = 16
#: Frames this small are checked only once complete (thespian's unsigned ACKs are 26 bytes).
SMALL_FRAME = 64
SECRET_BYTES = 32
#: The shortest secret accepted from a user (`Runtime(secret=...)`): 128 bits.
MIN_SECRET_BYTES = 16


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def check_secret(value: Any) -> bytes:
    """A user's secret (bytes, or text such as the contents of a cookie file) as bytes."""
    if isinstance(value, str):
        value = value.strip().encode()
    if not isinstance(value, (bytes, bytearray)) or len(value) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"secret: must be at least {MIN_SECRET_BYTES} bytes (bytes, or text such as "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`), the same on every host that talks to this runtime"
        )
    return bytes(value)


def read_secret_file(path: str | os.PathLike) -> bytes:
    """A secret kept in a file, like `~/.erlang.cookie`: refused unless only its owner can read it."""
    path = Path(path)
    try:
        st = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"secret file {path}: {exc.strerror}") from None
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ConfigError(
            f"secret file {path}: must belong to you and be readable by you only "
            f"(mode {stat.filemode(st.st_mode)}, uid {st.st_uid}); chmod 600 it"
        )
    return check_secret(text)


def _ack_frames() -> dict[bytes, str]:
    from thespian.system.transport.streamBuffer import ackDataErrPacket, ackPacket

    return {pickle.dumps(packet, protocol): packet for packet in (ackPacket, ackDataErrPacket) for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1)}


class Rejected(ValueError):
    """A frame that is not signed with a secret this process holds."""


def mac_key(secret: bytes) -> bytes:
    """The BLAKE2b key for a secret of any length (BLAKE2b takes keys of up to 64 bytes)."""
    return hashlib.blake2b(secret, digest_size=32, person=b"thespian-otp").digest()


def _mac(key: bytes, body: Any) -> bytes:
    return hashlib.blake2b(body, key=key, digest_size=TAG_BYTES).digest()


class SignedPickle:
    """pickle with a keyed-BLAKE2b tag in front; `loads` verifies before it unpickles.

    `keys`, `default` and `ring` hold MAC keys (`mac_key(secret)`), not the secrets."""

    def __init__(self, log_interval: float = 10.0) -> None:
        self.log_interval = log_interval
        #: admin port of an actor system -> its MAC key
        self.keys: dict[int, bytes] = {}
        #: the key of the latest install: kept after `forget`, so that a plain thespian
        #: ActorSystem started later in this process still signs what it sends consistently
        self.default: bytes | None = None
        #: every key a frame may be signed with, in this process
        self.ring: tuple[bytes, ...] = ()
        self.acks = _ack_frames()
        #: logging.dictConfig handler of the runtime's log (bases.log_defs()["handlers"]["main"])
        self.log_handler: dict[str, Any] = {}
        self._log: logging.Logger | None = None
        self._log_pid = 0
        self.rejected = 0
        self._unreported = 0
        self._reported_at = -float("inf")
        self._lock = threading.Lock()

    def dumps(self, value: Any, key: bytes | None = None) -> bytes:
        key = key or self.default
        if key is None:
            raise Rejected("no runtime secret is installed in this process")
        body = pickle.dumps(value)
        return self.size_tag(key, SIZE_TAG_BYTES + TAG_BYTES + len(body)) + _mac(key, body) + body

    @staticmethod
    def size_tag(key: bytes, size: int) -> bytes:
        return hashlib.blake2b(b"%d" % size, key=key, digest_size=SIZE_TAG_BYTES, person=b"frame-size").digest()

    def size_ok(self, tag: bytes, size: int) -> bool:
        return any(hmac.compare_digest(self.size_tag(key, size), tag) for key in self.ring)

    def loads(self, frame: bytes) -> Any:
        ack = self.acks.get(frame) if len(frame) <= SMALL_FRAME else None
        if ack is not None:
            return ack
        view = memoryview(frame)
        header = SIZE_TAG_BYTES + TAG_BYTES
        tag, body = view[SIZE_TAG_BYTES:header], view[header:]
        if len(frame) > header:
            for key in self.ring:
                if hmac.compare_digest(_mac(key, body), tag):
                    return pickle.loads(body)
        self._reject(len(frame))
        raise Rejected("frame not signed with this runtime's secret; dropped unread")

    def _reject(self, size: int) -> None:
        with self._lock:
            self.rejected += 1
            self._unreported += 1
            now = time.monotonic()
            if now - self._reported_at < self.log_interval:
                return
            count, self._unreported, self._reported_at = self._unreported, 0, now
        try:
            self._logger().warning(
                "rejected %d frame(s) not signed with this runtime's secret (latest %d bytes); nothing of them was "
                "unpickled. Someone who is not this runtime's owner is connecting to its ports (pid %d)",
                count, size, os.getpid(),
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - logging must never break the transport
            pass

    def _logger(self) -> logging.Logger:
        """A logger that writes straight to the runtime's log file or stderr.

        Not through thespian's log forwarding: a record scheduled from inside the transport's
        receive path was lost in 2 of 7 processes (measured), and a transport that logs through
        itself can feed a logging storm."""
        if self._log is None or self._log_pid != os.getpid():
            config = self.log_handler
            if config.get("class") == "logging.FileHandler":
                handler: logging.Handler = logging.FileHandler(config["filename"])
            else:
                handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handler.setLevel(config.get("level", "WARNING"))
            self._log = logging.Logger("supervision.auth", logging.WARNING)
            self._log.addHandler(handler)
            self._log_pid = os.getpid()
        return self._log


SIGNER = SignedPickle()


def _after_fork() -> None:
    # a forked actor process reports its own first rejection, not its parent's window
    SIGNER._reported_at, SIGNER._unreported, SIGNER.rejected = -float("inf"), 0, 0
    SIGNER._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
_installed = False
_install_lock = threading.Lock()
#: admin port -> how many Runtime objects of this process use its secret
_users: dict[int | None, int] = {}


def _admin_port(transport: Any) -> int | None:
    address = getattr(transport, "_adminAddr", None)
    details = getattr(address, "addressDetails", address)
    sockname = getattr(details, "sockname", None)
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def _checked_buffer_class() -> type:
    from thespian.system.transport.streamBuffer import ReceiveBuffer

    class CheckedReceiveBuffer(ReceiveBuffer):
        """thespian's frame buffer, which also drops a frame whose announced size is unsigned."""

        _size_checked = False

        def addMore(self, buf: bytes) -> None:
            super().addMore(buf)
            if self._size_checked or self._size is None or self._size <= SMALL_FRAME or self._blen < SIZE_TAG_BYTES:
                return
            self._size_checked = True
            if not SIGNER.size_ok(bytes(self._buf[:SIZE_TAG_BYTES]), self._size):
                SIGNER._reject(self._size)
                # thespian closes the socket on this (and logs "corrupted incoming data")
                raise Rejected(f"a frame announcing {self._size} bytes is not signed with this runtime's secret")

    return CheckedReceiveBuffer


def _patch() -> None:
    from thespian.system.transport import TCPTransport as module
    from thespian.system.transport.streamBuffer import toSendBuffer

    def serializer(self: Any, intent: Any) -> bytes:
        key = SIGNER.keys.get(_admin_port(self)) or SIGNER.default
        return toSendBuffer((self.myAddress, intent.message), lambda value: SIGNER.dumps(value, key))

    module.serializer = SIGNER  # what ReceiveBuffer(serializer.loads) and the ack buffers use
    module.ReceiveBuffer = _checked_buffer_class()
    module.TCPTransport.serializer = serializer


def install(secret: bytes, admin_port: int, log_handler: dict[str, Any] | None = None) -> None:
    """Sign and verify every TCP frame of this process (and the processes it forks from now on)
    with `secret` for the actor system whose admin listens on `admin_port`."""
    global _installed
    with _install_lock:
        if not _installed:
            _patch()
            _installed = True
        key = mac_key(secret)
        SIGNER.keys[admin_port] = key
        SIGNER.default = key
        _users[admin_port] = _users.get(admin_port, 0) + 1
        _update_ring()
        if log_handler is not None:
            SIGNER.log_handler, SIGNER._log = dict(log_handler), None


def forget(admin_port: int | None) -> None:
    """This process no longer talks to the actor system on `admin_port`."""
    with _install_lock:
        _users[admin_port] = _users.get(admin_port, 0) - 1
        if _users[admin_port] > 0:
            return  # a runtime and an attached handle to it, in one process
        del _users[admin_port]
        SIGNER.keys.pop(admin_port, None)
        _update_ring()


def _update_ring() -> None:
    keys = list(dict.fromkeys(SIGNER.keys.values()))
    if SIGNER.default is not None and SIGNER.default not in keys:
        keys.append(SIGNER.default)
    SIGNER.ring = tuple(keys)
