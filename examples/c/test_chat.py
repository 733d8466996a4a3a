#!/usr/bin/env python3
"""Smoke test of examples/c/chat_server.c over 127.0.0.1: three clients see
each other's lines; an oversized line is dropped with an error to its
sender, who stays connected; a client that resets its connection (RST), mid-line or idle, ends only
itself; the server stays up and serves a newcomer.

    test_chat.py CHAT_SERVER_BINARY [--backend epoll|uring|auto]

Exits 0 on success, 1 on failure, 77 (CTest's skip) when the backend asked
for is not available here.
"""
import socket
import struct
import subprocess
import sys
import time

TIMEOUT = 5.0  # seconds to wait for any one expected line
MAX_LINE = 1024  # chat_server.c's


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.name = self.expect(b"* welcome, ").split(b", ")[1].strip().decode()

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        """The next line, or b"" at EOF (a reset also counts as EOF)."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def expect(self, text):
        """Reads lines until one contains text; fails at EOF or timeout."""
        deadline = time.monotonic() + TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            line = self.line()
            if not line:
                break
            if text in line:
                return line
            seen.append(line)
        raise AssertionError(f"expected a line with {text!r}; got {seen!r}")

    def reset(self):
        """Closes with an RST instead of a FIN: SO_LINGER with a zero timeout."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


def check(server, port):
    a, b, c = Client(port), Client(port), Client(port)
    a.expect(f"* {b.name} joined".encode())
    a.expect(f"* {c.name} joined".encode())
    b.expect(f"* {c.name} joined".encode())

    a.send(b"hello from a\n")
    b.expect(f"{a.name}: hello from a".encode())
    c.expect(f"{a.name}: hello from a".encode())
    b.send(b"hi, b here\n")
    # a's next line is b's, not an echo of its own.
    assert a.line() == f"{b.name}: hi, b here\n".encode(), "sender got its own line"
    c.expect(f"{b.name}: hi, b here".encode())
    print("ok: broadcast to the others, not to the sender")

    # A line in two pieces is one line.
    c.send(b"split ")
    time.sleep(0.05)
    c.send(b"line\n")
    a.expect(f"{c.name}: split line".encode())
    b.expect(f"{c.name}: split line".encode())
    print("ok: a line sent in pieces arrives whole")

    # Oversized: dropped, with one error to its sender, who stays.
    c.send(b"x" * (MAX_LINE * 4) + b"\n")
    c.expect(b"* error: line longer than")
    c.send(b"after the long one\n")
    for other in (a, b):
        got = other.expect(f"{c.name}: after the long one".encode())
        assert b"x" not in got, "part of the long line was sent on"
    print("ok: an oversized line is dropped with an error; its sender stays")
    # One that ends the connection.
    c.send(b"y" * (MAX_LINE * 4))
    c.close()
    a.expect(f"* {c.name} left".encode())
    b.expect(f"* {c.name} left".encode())

    # Abrupt disconnects: an RST in the middle of a line, and an idle one.
    b.send(b"half a li")
    time.sleep(0.05)
    b.reset()
    a.expect(f"* {b.name} left".encode())
    d = Client(port)
    a.expect(f"* {d.name} joined".encode())
    d.reset()
    a.expect(f"* {d.name} left".encode())
    print("ok: reset connections end only themselves")

    # The server survives and serves a newcomer.
    assert server.poll() is None, f"server exited with {server.returncode}"
    e = Client(port)
    a.expect(f"* {e.name} joined".encode())
    a.send(b"still here?\n")
    e.expect(f"{a.name}: still here?".encode())
    e.send(b"yes\n")
    a.expect(f"{e.name}: yes".encode())
    a.close()
    e.expect(f"* {a.name} left".encode())
    e.close()
    assert server.poll() is None, f"server exited with {server.returncode}"
    print("ok: the server is still up and serving")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    server = subprocess.Popen(sys.argv[1:] + ["--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        ready = server.stdout.readline().split()
        if len(ready) != 2 or ready[0] != "READY":
            err = server.stderr.read() if server.wait(timeout=TIMEOUT) is not None else ""
            sys.stderr.write(err)
            if "backend asked for is not available" in err:
                print("SKIP: that backend is not available here")
                return 77
            print(f"FAIL: the server did not print READY <port> (got {ready!r})")
            return 1
        check(server, int(ready[1]))
    except (AssertionError, OSError) as e:
        print(f"FAIL: {e}")
        return 1
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
        sys.stderr.write(server.stderr.read())
    print("chat-server: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
