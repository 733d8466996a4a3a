#!/usr/bin/env python3
"""Smoke test of tinyasync-echo: starts it on a free port picked here,
checks echoes, an 8 MiB burst, abrupt
disconnects (a reset and a half-sent message), and --lines with an
oversized line; the server must still answer afterwards. Then the graceful
stop: SIGTERM with a connection in flight (served to its end, new ones
refused, exit 0), and SIGINT with an idle one (closed after the drain).

usage: test_echo.py PATH-TO-tinyasync-echo [--mode async|fiber] [--backend auto|epoll|uring]
"""
import socket
import struct
import subprocess
import sys


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, extra):
    port = free_port()
    p = subprocess.Popen([binary, "--port", str(port)] + extra,
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "READY", f"expected READY, got {line!r}"
    return p, port


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(min(1 << 20, n - len(data)))
        assert chunk, "EOF before the whole echo"
        data += chunk
    return bytes(data)


def reset(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def check_alive(port):
    with connect(port) as s:
        s.sendall(b"still there?\n")
        assert recv_exactly(s, 13) == b"still there?\n"


def bytes_mode(binary, extra):
    p, port = start(binary, extra)
    try:
        with connect(port) as s:
            for i in range(100):
                m = b"message %d\n" % i
                s.sendall(m)
                assert recv_exactly(s, len(m)) == m
        # 8 MiB in one burst, read back while sending.
        big = bytes(i % 251 for i in range(8 << 20))
        with connect(port) as s:
            import threading
            t = threading.Thread(target=s.sendall, args=(big,))
            t.start()
            assert recv_exactly(s, len(big)) == big
            t.join()
        # Abrupt ends: a reset in the middle of a stream, a close mid-echo.
        for _ in range(20):
            s = connect(port)
            s.sendall(b"x" * 100000)
            reset(s)
            s = connect(port)
            s.sendall(b"y" * 100000)
            s.close()
        check_alive(port)
        assert p.poll() is None, "the server died"
    finally:
        p.kill()
        p.wait()


def lines_mode(binary, extra):
    p, port = start(binary, extra + ["--lines", "--max-line", "100"])
    try:
        with connect(port) as s:
            s.sendall(b"one\ntw")
            assert recv_exactly(s, 4) == b"one\n"
            s.sendall(b"o\n")
            assert recv_exactly(s, 4) == b"two\n"
            s.sendall(b"z" * 1000 + b"\n")
            answer = s.makefile("rb").readline()
            assert answer.startswith(b"ERROR"), answer
        s = connect(port)
        s.sendall(b"q" * 5000)
        reset(s)
        check_alive(port)
        assert p.poll() is None, "the server died"
    finally:
        p.kill()
        p.wait()


def graceful_stop(binary, extra):
    """SIGTERM with a connection in flight: that connection is still
    served, new ones are refused, and once it closes the server exits 0,
    well within --drain-seconds. A connection that stays open past the
    drain is closed by the server, which still exits 0."""
    import signal
    import time
    p, port = start(binary, extra + ["--drain-seconds", "3"])
    try:
        s = connect(port)
        s.sendall(b"before\n")
        assert recv_exactly(s, 7) == b"before\n"
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert p.poll() is None, "the server stopped with a connection in flight"
        try:
            connect(port).close()
            raise AssertionError("a new connection was accepted after SIGTERM")
        except ConnectionRefusedError:
            pass
        s.sendall(b"after\n")
        assert recv_exactly(s, 6) == b"after\n", "the connection in flight lost its echo"
        t0 = time.monotonic()
        s.close()
        code = p.wait(timeout=10)
        assert code == 0, f"exit status {code} after SIGTERM"
        assert time.monotonic() - t0 < 2.0, "it waited for the whole drain after the last close"
        # A connection that stays open: closed after the drain, exit 0.
        p, port = start(binary, extra + ["--drain-seconds", "0.5"])
        s = connect(port)
        p.send_signal(signal.SIGINT)
        code = p.wait(timeout=10)
        assert code == 0, f"exit status {code} after SIGINT with an idle connection"
        assert s.recv(10) == b"", "the idle connection was not closed"
        s.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    binary, extra = sys.argv[1], sys.argv[2:]
    bytes_mode(binary, extra)
    lines_mode(binary, extra)
    graceful_stop(binary, extra)
    print("ok", " ".join(extra))
