import Glibc
import Testing
import TinyAsync

/// Whether pid is still ours to reap (running, or a zombie).
func notReaped(_ pid: Int32) -> Bool {
  var info = siginfo_t()
  return waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0
}

@Suite("Child processes: ChildProcess")
struct ChildProcessTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func exitCodesAndExecErrors(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      #expect(try await ChildProcess.spawn("true").wait() == .exited(0))
      let failing = try ChildProcess.spawn("/bin/false")
      #expect(try await failing.wait() == .exited(1))
      #expect(failing.exitStatus == .exited(1))
      #expect(!notReaped(failing.pid))
      // The exec's own error, not a child that exits 127.
      #expect(throws: TinyAsyncError.system(errno: ENOENT, message: String(cString: strerror(ENOENT)))) {
        _ = try ChildProcess.spawn("no-such-program-tinyasync")
      }
      let sh = try ChildProcess.spawn("sh", arguments: ["-c", "exit 7"])
      #expect(try await sh.wait() == .exited(7))
    }
  }

  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func eightMiBThroughCatBothWaysAtOnce(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    try loop.runUntilComplete {
      let cat = try ChildProcess.spawn("cat", stdin: .pipe, stdout: .pipe)
      let data = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ ($0 >> 13)) }
      // Writing all before reading would fill both pipes and stop both.
      let writer = loop.spawn {
        try await cat.stdin!.write(data)
        cat.stdin!.close()
      }
      var echoed: [UInt8] = []
      echoed.reserveCapacity(data.count)
      while true {
        let chunk = try await cat.stdout!.read(max: 1 << 20)
        if chunk.isEmpty { break }
        echoed += chunk
      }
      try await writer.value
      #expect(echoed == data)
      #expect(try await cat.wait().succeeded)
    }
  }

  @Test func environmentFolderNullAndKill() throws {
    let loop = try EventLoop()
    try loop.runUntilComplete {
      let sh = try ChildProcess.spawn(
        "/bin/sh", arguments: ["-c", "printf '%s %s' \"$WORD\" \"$(pwd)\"; cat"],
        environment: ["WORD": "bird", "PATH": "/usr/bin:/bin"], workingDirectory: "/",
        stdin: .null, stdout: .pipe)
      var text: [UInt8] = []
      while true {
        let chunk = try await sh.stdout!.read()
        if chunk.isEmpty { break }
        text += chunk
      }
      #expect(String(decoding: text, as: UTF8.self) == "bird /")
      #expect(try await sh.wait() == .exited(0))

      let sleeper = try ChildProcess.spawn("sleep", arguments: ["1000"])
      await #expect(throws: TinyAsyncError.timedOut) {
        try await withTimeout(.milliseconds(5)) { _ = try await sleeper.wait() }
      }
      #expect(sleeper.exitStatus == nil)  // it runs on
      try sleeper.kill()
      #expect(try await sleeper.wait() == .signaled(.terminate))
      #expect(throws: TinyAsyncError.system(errno: ESRCH, message: String(cString: strerror(ESRCH)))) {
        try sleeper.kill()
      }
    }
  }

  @Test func aFiberWaitsAndADroppedHandleIsStillReaped() throws {
    let loop = try EventLoop()
    var pid: Int32 = 0
    let status = try loop.runFiberUntilComplete { () throws -> ChildProcess.ExitStatus in
      let child = try ChildProcess.spawn("sh", arguments: ["-c", "exit 3"])
      let status = try child.wait()
      // Dropped while it runs: the loop reaps it when it exits.
      do {
        let sleeper = try ChildProcess.spawn("sleep", arguments: ["0.2"])
        pid = sleeper.pid
      }
      #expect(notReaped(pid))  // still running, its handle gone
      for _ in 0..<500 where notReaped(pid) { try sleep(for: .milliseconds(10)) }
      return status
    }
    #expect(status == .exited(3))
    #expect(pid > 0 && !notReaped(pid))
  }
}
