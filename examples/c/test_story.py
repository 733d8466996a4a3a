#!/usr/bin/env python3
"""Smoke test of examples/c/story.c: runs it and checks that every part of
the story printed its line and that the thousand sleepers finished in about
one second.

    test_story.py [--max-wall S] STORY_BINARY [--backend epoll|uring|auto]

--max-wall: the wall time allowed for the sleepers (default 3 s); the TSan
build passes more, each task there being a TSan fiber that is slow to make.

Exits 0 on success, 1 on failure, 77 (CTest's skip) when the backend asked
for is not available here.
"""
import re
import subprocess
import sys

EXPECTED = [
    r"^story: a loop on (epoll|io_uring)",
    r"^1\. 1000 tasks slept (?P<total>[0-9.]+) s in total in (?P<wall>[0-9.]+) s of wall time$",
    r"^2\. gather: finished in order b c a, results in argument order a b c$",
    r"^3\. fake_io: 8 threads completed futures through cloop_call_threadsafe",
    r"^4\. echo: 3 clients got their lines back from the server on 127\.0\.0\.1:[0-9]+$",
    r"^5\. periodic: the background task ticked [0-9]+ times",
    r"^story: done$",
]


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    args, max_wall = sys.argv[1:], 3.0
    if args[0] == "--max-wall":
        max_wall, args = float(args[1]), args[2:]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if "backend asked for is not available" in proc.stderr:
        print("SKIP: that backend is not available here")
        return 77
    failed = proc.returncode != 0
    if failed:
        print(f"FAIL: story exited with {proc.returncode}")
    lines = proc.stdout.splitlines()
    for pattern in EXPECTED:
        match = next((m for m in map(re.compile(pattern).match, lines) if m), None)
        if not match:
            print(f"FAIL: no line matches {pattern!r}")
            failed = True
        elif "wall" in match.groupdict():
            total, wall = float(match["total"]), float(match["wall"])
            # About 500 s of sleeping (delays are uniform under 1 s) in about
            # 1 s; generous for sanitizer builds and busy machines.
            if not 400 <= total <= 600 or not 0.9 <= wall <= max_wall:
                print(f"FAIL: {total} s of sleeping in {wall} s of wall time")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
