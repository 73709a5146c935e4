"""An HTTP/2 (h2c) gRPC peer that ends every call the way newer grpc-go servers do when the
deadline passes: at its own copy of the deadline (the `grpc-timeout` of the request, counted from
when it read the request headers) it resets the stream with RST_STREAM(CANCEL), without trailers
(grpc-go's http2_server: `time.AfterFunc(timeout, ... t.closeStream(s, true, http2.ErrCodeCancel,
false))`). Debian's grpc-go (1.33) predates that timer, so this peer stands in for it; it is built on
the `h2` library (python-hyper), the HTTP/2 stack of hypercorn.

    python3 h2_deadline_reset_server.py --listen 127.0.0.1:0

Any POST is a call; a call without `grpc-timeout` is held until the client ends it. A path ending in
`AfterHeaders` gets the response headers (`:status 200`, `content-type: application/grpc`) at once,
as a streaming handler that sent its headers; other calls get nothing before the reset. A path
ending in `ResetNow` is reset with CANCEL at once (after those headers), whatever its deadline. Prints
`listening on ADDR`; exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import select
import signal
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions

UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
CANCEL = 0x8


def decode_timeout(value: str) -> float | None:
    if len(value) < 2 or value[-1] not in UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * UNITS[value[-1]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind((host, int(port)))
    lsock.listen(64)
    print(f"listening on {host}:{lsock.getsockname()[1]}", flush=True)

    conns: dict[socket.socket, h2.connection.H2Connection] = {}
    timers: list[tuple[float, socket.socket, int]] = []  # (deadline, connection, stream id)
    cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")

    def flush(sock: socket.socket) -> None:
        data = conns[sock].data_to_send()
        if data:
            try:
                sock.sendall(data)
            except OSError:
                drop(sock)

    def drop(sock: socket.socket) -> None:
        conns.pop(sock, None)
        timers[:] = [t for t in timers if t[1] is not sock]
        sock.close()

    try:
        while True:
            now = time.monotonic()
            wait = max(0.0, min(t[0] for t in timers) - now) if timers else None
            readable, _, _ = select.select([lsock, *conns], [], [], wait)
            for sock in readable:
                if sock is lsock:
                    c, _ = lsock.accept()
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c] = h2.connection.H2Connection(config=cfg)
                    conns[c].initiate_connection()
                    flush(c)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    drop(sock)
                    continue
                conn = conns[sock]
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    flush(sock)
                    drop(sock)
                    continue
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        headers = dict(ev.headers)
                        timeout = decode_timeout(headers.get("grpc-timeout", ""))
                        path = headers.get(":path", "")
                        if path.endswith("ResetNow"):
                            path = path[:-len("ResetNow")]
                            timers.append((0.0, sock, ev.stream_id))
                        elif timeout is not None:
                            timers.append((time.monotonic() + timeout, sock, ev.stream_id))
                        if path.endswith("AfterHeaders"):
                            conn.send_headers(ev.stream_id, [(":status", "200"), ("content-type", "application/grpc")])
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamReset):
                        timers[:] = [t for t in timers if not (t[1] is sock and t[2] == ev.stream_id)]
                if sock in conns:
                    flush(sock)
            now = time.monotonic()
            due = [t for t in timers if t[0] <= now]
            timers[:] = [t for t in timers if t[0] > now]
            for _, sock, sid in due:
                if sock not in conns:
                    continue
                try:
                    conns[sock].reset_stream(sid, error_code=CANCEL)
                except h2.exceptions.H2Error:
                    continue  # the stream is already closed
                flush(sock)
    except SystemExit:
        return 0
    finally:
        for sock in list(conns):
            sock.close()
        lsock.close()


if __name__ == "__main__":
    sys.exit(main())
