#!/usr/bin/env python3
"""Smoke test of examples/c/unix_kv.c over a Unix socket: SET/GET/DEL/QUIT
answer as documented; an unknown command is an error and the connection
goes on; an oversized line is refused and closed; clients that reset
mid-line or vanish end only themselves; a stale socket file left by a
killed server is taken over by the next one; SIGTERM with a client in the
middle of a request: that request gets its whole answer, new clients are
refused, and the server exits 0 within its drain deadline and removes its
socket file.

    test_unix_kv.py UNIX_KV_BINARY [--backend epoll|uring|auto]

Exits 0 on success, 1 on failure, 77 (CTest's skip) when the backend asked
for is not available here.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

TIMEOUT = 5.0


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = b""

    def line(self):
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
        return line

    def ask(self, request):
        self.sock.sendall(request + b"\n")
        return self.line()

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def start(binary, path, backend, drain="5"):
    proc = subprocess.Popen([binary, "--path", path, "--backend", backend,
                             "--drain-seconds", drain],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    if line.strip() != b"READY":
        err = proc.stderr.read().decode(errors="replace")
        proc.wait()
        if proc.returncode == 77:
            print(f"SKIP: {err.strip()}")
            sys.exit(77)
        raise AssertionError(f"no READY (exit {proc.returncode}): {err}")
    return proc


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    binary = sys.argv[1]
    backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "auto"
    folder = tempfile.mkdtemp(prefix="unix-kv-")
    path = os.path.join(folder, "kv.sock")

    proc = start(binary, path, backend)
    a = Client(path)
    check(a.ask(b"SET colour blue sky") == b"OK", "SET")
    check(a.ask(b"GET colour") == b"VALUE blue sky", "GET")
    check(a.ask(b"GET nothing") == b"NOT_FOUND", "GET of a missing key")
    check(a.ask(b"FROB x") == b"ERR unknown command", "unknown command")
    check(a.ask(b"DEL colour") == b"OK", "DEL")
    check(a.ask(b"DEL colour") == b"NOT_FOUND", "DEL again")
    check(a.ask(b"") == b"ERR empty line", "empty line")
    # Two clients see one store; pipelined requests each get their answer.
    b = Client(path)
    b.sock.sendall(b"SET k1 v1\nSET k2 v2\nGET k1\n")
    check([b.line(), b.line(), b.line()] == [b"OK", b"OK", b"VALUE v1"], "pipelined")
    check(a.ask(b"GET k2") == b"VALUE v2", "shared store")
    # An oversized line: refused, and that connection closed.
    c = Client(path)
    c.sock.sendall(b"SET big " + b"x" * 2000 + b"\n")
    check(c.line() == b"ERR line too long", "oversized line")
    check(c.line() == b"", "closed after an oversized line")
    # Resets mid-line and a client that vanishes end only themselves.
    d = Client(path)
    d.sock.sendall(b"SET half")
    d.reset()
    e = Client(path)
    e.sock.close()
    check(a.ask(b"GET k1") == b"VALUE v1", "the server survives resets")
    check(a.ask(b"QUIT") == b"BYE", "QUIT")
    check(a.line() == b"", "closed after QUIT")

    # A killed server leaves its socket file; the next one takes it over.
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check(os.path.exists(path), "a killed server leaves its socket file")
    # On io_uring the kernel lets go of a killed process's listening socket
    # only once the ring's teardown has run (measured: 6-10 ms), and until
    # then the file is no stale one: a bounded retry, for now (issue 19's
    # restart at once).
    for attempt in range(50):
        try:
            proc = start(binary, path, backend, drain="3")
            break
        except AssertionError as e:
            if "Address already in use" not in str(e) or attempt == 49:
                raise
            time.sleep(0.02)
    f = Client(path)
    check(f.ask(b"SET after restart") == b"OK", "served after a restart")

    # SIGTERM with a request half-sent: it gets its whole answer, new
    # clients are refused, and the server exits 0 within the drain.
    f.sock.sendall(b"GET aft")
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        Client(path)
        check(False, "a new client was accepted after SIGTERM")
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    f.sock.sendall(b"er\n")
    check(f.line() == b"VALUE restart", "the request in flight got its answer")
    f.sock.close()
    code = proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    check(code == 0, f"exit status {code} after SIGTERM")
    check(elapsed < 3.0 + 2.0, f"stopped after {elapsed:.1f} s, drain was 3 s")
    check(not os.path.exists(path), "the socket file is removed")
    os.rmdir(folder)
    print(f"unix-kv smoke test passed --backend {backend}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
