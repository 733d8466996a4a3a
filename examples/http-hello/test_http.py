#!/usr/bin/env python3
"""Smoke test of tinyasync-http-hello: starts it on a free port picked here
and checks keep-alive (many requests on one connection), pipelining (three
requests in one write), HTTP/1.0, HEAD, a request with a body, and bad
input — an oversized head (431), a malformed request line (400), a chunked
body (501), a reset connection, a head cut off by a close — after each of
which the server must still answer; and GET /file, the file given with
--file streamed byte for byte (HEAD, keep-alive after it, 404 once it is
gone).

usage: test_http.py PATH-TO-tinyasync-http-hello [--backend auto|epoll|uring]
"""
import socket
import struct
import os
import subprocess
import sys
import tempfile

HELLO = b"Hello, World!"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


class Reader:
    """Reads HTTP responses off one socket (Content-Length bodies only)."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        n = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self):
        """True when the server closed the connection (nothing more came)."""
        try:
            return self.sock.recv(1) == b"" and not self.buf
        except ConnectionResetError:
            return True


def get(path="/", extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def check_alive(port):
    with connect(port) as s:
        s.sendall(get())
        status, _, body = Reader(s).response()
        assert (status, body) == (200, HELLO), (status, body)


def main():
    binary, extra = sys.argv[1], sys.argv[2:]
    port = free_port()
    served = tempfile.NamedTemporaryFile(prefix="http-hello-file-", delete=False)
    file_bytes = os.urandom((3 << 20) + 7)
    served.write(file_bytes)
    served.close()
    p = subprocess.Popen([binary, "--port", str(port), "--file", served.name] + extra,
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline().strip()
        assert line == "READY", f"expected READY, got {line!r}"

        # Keep-alive: 100 requests on one connection.
        with connect(port) as s:
            r = Reader(s)
            for _ in range(100):
                s.sendall(get())
                status, headers, body = r.response()
                assert (status, body) == (200, HELLO), (status, body)
                assert "connection" not in headers, headers

        # GET /file: the --file streamed, every byte; HEAD; a GET / after it
        # on the same connection; a 404 once the file is gone, and the
        # connection still serves.
        with connect(port) as s:
            r = Reader(s)
            for _ in range(3):
                s.sendall(get("/file"))
                status, headers, body = r.response()
                assert status == 200, status
                assert headers["content-length"] == str(len(file_bytes)), headers
                assert body == file_bytes, "the file's bytes differ"
            s.sendall(b"HEAD /file HTTP/1.1\r\n\r\n")
            status, headers, _ = r.response(head_only=True)
            assert status == 200 and headers["content-length"] == str(len(file_bytes)), headers
            s.sendall(get())
            assert r.response()[2] == HELLO
            os.rename(served.name, served.name + ".away")
            try:
                s.sendall(get("/file"))
                status, _, body = r.response()
                assert status == 404 and served.name.encode() in body, (status, body)
            finally:
                os.rename(served.name + ".away", served.name)
            s.sendall(get("/file"))
            assert r.response()[2] == file_bytes

        # Pipelining: three requests in one write, three answers in order.
        with connect(port) as s:
            s.sendall(get("/a") + get("/b") + get("/c", "Connection: close\r\n"))
            r = Reader(s)
            for i in range(3):
                status, headers, body = r.response()
                assert (status, body) == (200, HELLO), (i, status, body)
            assert headers.get("connection") == "close", headers
            assert r.closed(), "the connection stayed open after Connection: close"

        # HTTP/1.0 closes unless asked; with keep-alive it stays open.
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            r = Reader(s)
            assert r.response()[0] == 200
            assert r.closed(), "HTTP/1.0 without keep-alive stayed open"
        with connect(port) as s:
            r = Reader(s)
            for _ in range(2):
                s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                status, headers, _ = r.response()
                assert status == 200 and headers.get("connection") == "keep-alive", headers

        # HEAD: the headers of a GET, no body; then a POST with a body that
        # must be skipped, and a GET after it on the same connection.
        with connect(port) as s:
            r = Reader(s)
            s.sendall(b"HEAD / HTTP/1.1\r\n\r\n")
            status, headers, _ = r.response(head_only=True)
            assert status == 200 and headers["content-length"] == str(len(HELLO)), headers
            body = b"x" * 100000
            s.sendall(f"POST /form HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body + get())
            assert r.response()[2] == HELLO
            assert r.response()[2] == HELLO

        # Bad input: each gets its status and a closed connection; the
        # server answers the next client.
        for request, want in [
            (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
            (b"NONSENSE\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
            (b"GET / HTTP/1.1\r\n\xff\xfe\r\n\r\n", 400),
        ]:
            with connect(port) as s:
                s.sendall(request)
                r = Reader(s)
                status, headers, _ = r.response()
                assert status == want, (request[:40], status, want)
                assert headers.get("connection") == "close", headers
                assert r.closed(), f"open after a {status}"
            check_alive(port)

        # Abrupt disconnects: a reset mid-head, a close mid-head, a reset
        # with a response unread.
        for partial in [b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n"]:
            s = connect(port)
            s.sendall(partial)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
            with connect(port) as s:
                s.sendall(partial)
                s.shutdown(socket.SHUT_WR)
                assert Reader(s).closed(), "a cut-off head got an answer"
            check_alive(port)
        s = connect(port)
        s.sendall(get() * 50)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        check_alive(port)

        assert p.poll() is None, "the server exited"

        # The graceful stop: an idle keep-alive connection is closed, a
        # request half-sent when SIGTERM comes gets its whole answer with
        # "Connection: close", new connections are refused, exit 0.
        import signal
        import time
        idle = connect(port)
        idle.sendall(get())
        Reader(idle).response()  # now idle, kept alive
        busy = connect(port)
        busy.sendall(b"GET / HTTP/1.1\r\nHo")
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert Reader(idle).closed(), "the idle keep-alive connection stayed open"
        try:
            connect(port).close()
            raise AssertionError("a new connection was accepted after SIGTERM")
        except ConnectionRefusedError:
            pass
        busy.sendall(b"st: x\r\n\r\n")
        r = Reader(busy)
        status, headers, body = r.response()
        assert status == 200 and body == b"Hello, World!", (status, body)
        assert headers.get("connection") == "close", headers
        assert r.closed(), "open after its last answer"
        code = p.wait(timeout=10)
        assert code == 0, f"exit status {code} after SIGTERM"
        print("http-hello smoke test passed", " ".join(extra))
    finally:
        os.unlink(served.name)
        if p.poll() is None:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
