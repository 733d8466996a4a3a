#!/usr/bin/env python3
"""Smoke test of a UDP echo server (examples/c/udp_echo.c, and the Swift
tinyasync-udp-echo, which answer alike): datagrams of 0, 1, 1000 and the
largest size it takes come back whole to their sender; one over its --max
gets "ERR too long" instead of a cut echo and the server goes on; two
clients are answered each at its own address; a client that vanishes
before its answer (ICMP port unreachable) leaves the server serving.

    test_udp_echo.py SERVER_COMMAND... [--backend epoll|uring]

The server must take --port 0 --max N --backend B and print "READY <port>".
Exits 0 on success, 1 on failure, 77 (CTest's skip) when the backend asked
for is not available here.
"""
import socket
import subprocess
import sys

TIMEOUT = 5.0
MAX = 1500


def main():
    args = sys.argv[1:]
    backend = "auto"
    if "--backend" in args:
        i = args.index("--backend")
        backend = args[i + 1]
        del args[i:i + 2]
    proc = subprocess.Popen(args + ["--port", "0", "--max", str(MAX), "--backend", backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != b"READY":
            proc.wait(timeout=TIMEOUT)
            err = proc.stderr.read().decode(errors="replace")
            if backend == "uring" and "uring" in err.lower():
                print(f"SKIP: backend {backend}: {err.strip()}")
                sys.exit(77)
            raise AssertionError(f"no READY (exit {proc.returncode}): {err}")
        server = ("127.0.0.1", int(line[1]))

        def client():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(TIMEOUT)
            s.bind(("127.0.0.1", 0))
            return s

        a, b = client(), client()
        for size in (0, 1, 1000, MAX):
            data = bytes((i * 7 + size) & 0xFF for i in range(size))
            a.sendto(data, server)
            got, frm = a.recvfrom(65536)
            assert got == data, f"{size} B: got {len(got)} B back"
            assert frm == server, frm
        # Over --max: an error answer, not a cut echo; the server goes on.
        a.sendto(b"x" * (MAX + 1), server)
        got, _ = a.recvfrom(65536)
        assert got == b"ERR too long\n", got
        a.sendto(b"still there?", server)
        assert a.recvfrom(65536)[0] == b"still there?"
        # A client gone before its answer: the server's send meets nobody.
        gone = client()
        gone.sendto(b"bye", server)
        gone.close()
        # Two clients, each answered at its own address.
        a.sendto(b"from a", server)
        b.sendto(b"from b", server)
        assert a.recvfrom(65536)[0] == b"from a"
        assert b.recvfrom(65536)[0] == b"from b"
        assert proc.poll() is None, "the server exited"
        print("udp echo: ok")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
