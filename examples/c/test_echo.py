#!/usr/bin/env python3
"""Smoke test of the C echo server (examples/c/echo_server.c) on a group of
loops: 64 connections at once, each echoing 1 byte, 64 KiB and 256 KiB + 1
with every byte compared; then SIGTERM stops it gracefully (exit 0) and the
connections per loop it reports on the way out are all above 0 (exactly
equal with --acceptor, which hands them out round-robin).

    test_echo.py SERVER [--backend epoll|uring] [--loops N] [--acceptor]

Exits 0 on success, 1 on failure, 77 (CTest's skip) when the backend asked
for is not available here.
"""
import os
import re
import signal
import socket
import subprocess
import sys

TIMEOUT = 10.0
CONNS = 64


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    server, args = sys.argv[1], sys.argv[2:]
    backend = args[args.index("--backend") + 1] if "--backend" in args else "auto"
    # The server's default: a loop per CPU of the affinity mask (inherited).
    loops = int(args[args.index("--loops") + 1]) if "--loops" in args else 0
    if loops == 0:
        loops = len(os.sched_getaffinity(0))
    if backend == "uring" and subprocess.call([server, "--probe-uring"]) != 0:
        print("SKIP: backend uring: no io_uring loop here")
        sys.exit(77)
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port)] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline().strip()
        if line != b"READY":
            proc.wait(timeout=TIMEOUT)
            raise AssertionError(f"no READY (exit {proc.returncode}): "
                                 f"{proc.stderr.read().decode(errors='replace')}")
        clients = []
        for _ in range(CONNS):
            c = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            clients.append(c)
        sizes = (1, 65536, 256 * 1024 + 1)
        pattern = bytes((j * 31 + j // 251) & 0xFF for j in range(max(sizes) + CONNS))
        for i, c in enumerate(clients):
            for size in sizes:
                data = pattern[i:i + size]  # each connection its own bytes
                c.sendall(data)
                got = bytearray()
                while len(got) < size:
                    chunk = c.recv(size - len(got))
                    assert chunk, f"connection {i}: closed after {len(got)} of {size} B"
                    got += chunk
                assert got == data, f"connection {i}: {size} B came back different"
        for c in clients:
            c.close()
        assert proc.poll() is None, "the server exited"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
        err = err.decode(errors="replace")
        assert proc.returncode == 0, f"exit {proc.returncode}: {err}"
        m = re.search(r"connections per loop:((?: \d+)+)", err)
        assert m, f"no per-loop count: {err}"
        counts = [int(x) for x in m.group(1).split()]
        assert len(counts) == loops and sum(counts) == CONNS, counts
        assert all(n > 0 for n in counts), f"a loop served nothing: {counts}"
        if "--acceptor" in args:
            assert max(counts) - min(counts) <= 1, f"not round-robin: {counts}"
        print(f"echo on {loops} loops ({backend}): ok, per loop {counts}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}")
        sys.exit(1)
