"""One ADB connection, device side: handshake, authentication, streams and their flow control.

A reader thread per connection decodes messages; each opened stream runs its service in its own
thread. Flow control follows the protocol: a stream has at most one WRTE in flight and waits for
the peer's OKAY before sending the next. The peer's WRTE is answered with OKAY as soon as it is
queued for the service (as adbd does once the data sits in the service's socket buffer), unless
the service has fallen more than ``RECEIVE_BUFFER_BYTES`` behind: then the OKAY waits until the
service has taken data, so a slow service slows the sender instead of filling memory. The
delayed-ack extension is not advertised, so peers use this classic scheme.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from device_runner.sim import protocol as p

if TYPE_CHECKING:
    from device_runner.sim.phone import SimulatedPhone

log = logging.getLogger(__name__)

RECEIVE_BUFFER_BYTES = 2 * 1024 * 1024


class StreamClosed(Exception):
    """The peer closed the stream (or the connection went away)."""


class Stream:
    """A logical ADB stream (one OPEN); the service side reads and writes bytes through it."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._may_write = threading.Event()
        self._may_write.set()
        self.closed = False
        self._buffered = 0          # bytes queued for the service
        self._okay_owed = False     # an OKAY held back because the service is behind
        self._rx_lock = threading.Lock()

    # called by the connection's reader thread
    def _deliver(self, data: bytes) -> None:
        with self._rx_lock:
            self._buffered += len(data)
            owe = self._buffered > RECEIVE_BUFFER_BYTES
            self._okay_owed = owe
        self._inbox.put(data)
        if not owe:
            self.conn.send(p.A_OKAY, self.local_id, self.remote_id)

    def _peer_okay(self) -> None:
        self._may_write.set()

    def _peer_closed(self) -> None:
        self.closed = True
        self._inbox.put(None)
        self._may_write.set()

    # used by services
    def read(self, timeout_s: float | None = None) -> bytes | None:
        """Next payload from the peer, or None when the peer closed the stream."""
        try:
            item = self._inbox.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError("no data from the peer") from None
        if item is None:
            self._inbox.put(None)  # stay closed for later reads
            return None
        with self._rx_lock:
            self._buffered -= len(item)
            send_okay = self._okay_owed and self._buffered <= RECEIVE_BUFFER_BYTES
            if send_okay:
                self._okay_owed = False
        if send_okay and not self.closed:
            self.conn.send(p.A_OKAY, self.local_id, self.remote_id)
        return item

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` in WRTE packets no larger than the peer accepts, one in flight at a time."""
        view = memoryview(data)
        step = self.conn.max_payload
        for start in range(0, len(view), step):
            self._wait_okay()
            self._may_write.clear()
            self.conn.send(p.A_WRTE, self.local_id, self.remote_id, view[start:start + step])

    def _wait_okay(self) -> None:
        while not self._may_write.wait(1.0):
            if self.conn.dead:
                self.closed = True
                raise StreamClosed("connection lost")
        if self.closed:
            raise StreamClosed("peer closed the stream")

    def close(self) -> None:
        """Close our side after the last WRTE was acknowledged (or at once if the peer is gone)."""
        if self.closed:
            self.conn.forget(self.local_id)
            return
        self._may_write.wait(5.0)
        self.closed = True
        self.conn.forget(self.local_id)
        try:
            self.conn.send(p.A_CLSE, self.local_id, self.remote_id)
        except (OSError, StreamClosed):
            pass


class StreamReader:
    """Byte-exact reads over a stream's packet flow (sync records may straddle WRTE packets)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._buf = bytearray()

    def read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.stream.read()
            if chunk is None:
                raise StreamClosed("stream closed mid-record")
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_some(self, n: int) -> bytes:
        """Up to ``n`` bytes (at least one), for large copies without an extra join."""
        if not self._buf:
            chunk = self.stream.read()
            if chunk is None:
                raise StreamClosed("stream closed mid-record")
            if len(chunk) <= n:
                return chunk
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out


class BufferedWriter:
    """Collects small records into WRTE packets of the peer's maximum size."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._buf = bytearray()

    def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        limit = self.stream.conn.max_payload
        if len(self._buf) >= limit:
            whole = len(self._buf) - len(self._buf) % limit
            self.stream.write(memoryview(self._buf)[:whole])
            del self._buf[:whole]

    def flush(self) -> None:
        if self._buf:
            self.stream.write(bytes(self._buf))
            self._buf.clear()


class Connection:
    """The device end of one TCP connection from an ADB host (adb server or adb-shell)."""

    def __init__(self, phone: SimulatedPhone, sock: socket.socket, on_exit: Callable[[Connection], None]) -> None:
        self.phone = phone
        self.sock = sock
        self._on_exit = on_exit
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self._next_id = 1
        self.peer_version = p.VERSION_MIN
        self.max_payload = 4096
        self.online = False
        self.dead = False
        self.bytes_received = 0
        self._token = b""
        self._fault_gen = -1      # which phone.faults setting _drop_at was computed for
        self._drop_at: int | None = None
        self.thread = threading.Thread(target=self._run, name="adb-sim-conn", daemon=True)

    # --- sending -----------------------------------------------------------------------------
    def send(self, command: int, arg0: int, arg1: int, data: bytes | memoryview = b"") -> None:
        header = p.pack_header(command, arg0, arg1, data,
                               with_checksum=self.peer_version < p.VERSION_SKIP_CHECKSUM)
        with self._send_lock:
            if self.dead:
                raise StreamClosed("connection lost")
            if data:
                self._sendall([header, data])
            else:
                self.sock.sendall(header)

    def _sendall(self, parts: list) -> None:
        views = [memoryview(x).cast("B") for x in parts]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if views and sent:
                views[0] = views[0][sent:]

    # --- receiving ---------------------------------------------------------------------------
    def _recv_exact(self, rfile, n: int) -> bytes:
        data = rfile.read(n) if n else b""
        if len(data) != n:
            raise EOFError("peer closed the connection")
        self.bytes_received += n
        if self._fault_gen != self.phone._fault_gen:  # faults changed: this connection may be hit now
            self._fault_gen = self.phone._fault_gen
            budget = self.phone._claim_drop_budget()
            self._drop_at = None if budget is None else self.bytes_received + budget
        if self._drop_at is not None and self.bytes_received >= self._drop_at:
            log.info("fault: dropping connection after %d bytes", self.bytes_received)
            raise EOFError("fault: drop_after_bytes")
        return data

    def _run(self) -> None:
        rfile = self.sock.makefile("rb", buffering=1 << 20)
        try:
            while True:
                header = self._recv_exact(rfile, p.HEADER_SIZE)
                command, arg0, arg1, length, crc = p.unpack_header(header)
                if length > max(self.max_payload, p.DEVICE_MAX_PAYLOAD_BYTES, 1 << 20):
                    raise p.ProtocolError(f"payload of {length} bytes is over the limit")
                data = self._recv_exact(rfile, length)
                if crc and self.peer_version < p.VERSION_SKIP_CHECKSUM and p.checksum(data) != crc:
                    raise p.ProtocolError("bad checksum")
                self._handle(p.Message(command, arg0, arg1, data))
        except (EOFError, OSError, p.ProtocolError) as err:
            log.debug("connection ends: %s", err)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._send_lock:
            self.dead = True
        with self._streams_lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for s in streams:
            s._peer_closed()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._on_exit(self)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def forget(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    # --- message handling --------------------------------------------------------------------
    def _handle(self, msg: p.Message) -> None:
        if msg.command == p.A_CNXN:
            self.peer_version = min(msg.arg0, p.DEVICE_VERSION) if msg.arg0 >= p.VERSION_MIN else p.VERSION_MIN
            self.max_payload = max(1024, min(msg.arg1, p.DEVICE_MAX_PAYLOAD_BYTES))
            self.online = False
            self._send_token()
        elif msg.command == p.A_AUTH:
            self._handle_auth(msg)
        elif not self.online:
            log.debug("ignoring %s before the connection is authorised", msg.name)
        elif msg.command == p.A_OPEN:
            self._open(msg)
        elif msg.command in (p.A_OKAY, p.A_WRTE, p.A_CLSE):
            with self._streams_lock:
                stream = self._streams.get(msg.arg1)
            if stream is None:
                if msg.command == p.A_WRTE:  # a stream we already closed: tell the peer again
                    self.send(p.A_CLSE, msg.arg1, msg.arg0)
                return
            if msg.command == p.A_OKAY:
                if stream.remote_id == 0:
                    stream.remote_id = msg.arg0
                stream._peer_okay()
            elif msg.command == p.A_WRTE:
                stream._deliver(msg.data)
            else:  # the peer closes: close our end too and say so (adb-shell waits for this CLSE)
                self.forget(stream.local_id)
                if not stream.closed:
                    stream.closed = True
                    self.send(p.A_CLSE, stream.local_id, stream.remote_id)
                stream._peer_closed()
        else:
            log.debug("ignoring %s", msg.name)

    def _send_token(self) -> None:
        self._token = os.urandom(p.TOKEN_BYTES)
        self.send(p.A_AUTH, p.AUTH_TOKEN, 0, self._token)

    def _handle_auth(self, msg: p.Message) -> None:
        if self.online:
            return
        phone = self.phone
        if msg.arg0 == p.AUTH_SIGNATURE:
            if not phone.faults.refuse_auth and phone._signature_trusted(self._token, msg.data):
                self._go_online()
            else:
                self._send_token()  # like adbd: a new token, the host then tries its next key
        elif msg.arg0 == p.AUTH_RSAPUBLICKEY:
            if phone._accept_public_key(msg.data):
                self._go_online()
            # else: the "Allow USB debugging?" prompt stays unanswered; the host reports unauthorized
        else:
            log.debug("unknown AUTH type %d", msg.arg0)

    def _go_online(self) -> None:
        self.online = True
        self.send(p.A_CNXN, p.DEVICE_VERSION, p.DEVICE_MAX_PAYLOAD_BYTES, self.phone.banner())

    def _open(self, msg: p.Message) -> None:
        service = msg.data.split(b"\0", 1)[0].decode("utf-8", "replace")
        handler = self.phone._service_for(service)
        if handler is None:
            self.send(p.A_CLSE, 0, msg.arg0)
            return
        with self._streams_lock:
            local_id = self._next_id
            self._next_id += 1
            stream = Stream(self, local_id, msg.arg0)
            self._streams[local_id] = stream
        self.send(p.A_OKAY, local_id, msg.arg0)
        threading.Thread(target=self._serve, args=(handler, stream, service), daemon=True,
                         name=f"adb-sim-{service.split(':', 1)[0]}").start()

    def _serve(self, handler, stream: Stream, service: str) -> None:
        try:
            handler(stream)
        except StreamClosed:
            pass
        except Exception:  # a bug in a service must not take the phone down; it closes the stream
            log.exception("service %r failed", service)
        finally:
            stream.close()
