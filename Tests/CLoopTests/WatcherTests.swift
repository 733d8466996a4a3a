import CLoop
import Glibc
import Testing

@Suite("Fd watchers")
struct WatcherTests {
  /// A non-blocking pipe: (read end, write end).
  func makePipe() throws -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    try #require(pipe(&fds) == 0)  // pipe2 is behind _GNU_SOURCE, which Glibc's module lacks
    for fd in fds { try #require(fcntl(fd, F_SETFL, O_NONBLOCK) == 0) }
    return (fds[0], fds[1])
  }

  @Test(arguments: BackendUnderTest.allCases)
  func readWatcherFiresAndRemovesItselfInItsCallback(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    let (readEnd, writeEnd) = try makePipe()
    defer { close(readEnd); close(writeEnd) }
    let log = Log(loop: loop)
    var received: [UInt8] = []
    var unwatchResult: Int32 = -1
    let probe = Probe(7, log) { probe in
      var byte: UInt8 = 0
      if read(readEnd, &byte, 1) == 1 { received.append(byte) }
      unwatchResult = cloop_unwatch(loop, probe.watcher)
    }
    try #require(cloop_watch(loop, probe.watcher, readEnd, Int32(CLOOP_READABLE), probeFired, probe.opaque) == 0)
    #expect(probe.watcher.pointee.fd == readEnd)
    #expect(probe.watcher.pointee.loop == loop)
    var byte = UInt8(ascii: "x")
    #expect(write(writeEnd, &byte, 1) == 1)

    #expect(cloop_run(loop) == 0)  // the watcher was the only thing left
    #expect(log.order == [7])
    #expect(received == [UInt8(ascii: "x")])
    #expect(unwatchResult == 1)
    #expect(probe.watcher.pointee.loop == nil)  // idle
    #expect(cloop_unwatch(loop, probe.watcher) == 0)
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test(arguments: BackendUnderTest.allCases)
  func readinessIsLevelTriggered(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    let (readEnd, writeEnd) = try makePipe()
    defer { close(readEnd); close(writeEnd) }
    let log = Log(loop: loop)
    let probe = Probe(1, log)  // never reads: the fd stays readable
    try #require(cloop_watch(loop, probe.watcher, readEnd, Int32(CLOOP_READABLE), probeFired, probe.opaque) == 0)

    #expect(cloop_run_once(loop, 0) == 1)
    #expect(log.order == [])  // nothing written yet
    var byte = UInt8(ascii: "y")
    #expect(write(writeEnd, &byte, 1) == 1)
    for _ in 0..<3 { #expect(cloop_run_once(loop, 1_000_000_000) == 1) }
    #expect(log.order == [1, 1, 1])
    #expect(cloop_unwatch(loop, probe.watcher) == 1)
    #expect(cloop_run_once(loop, 0) == 0)
    #expect(log.order == [1, 1, 1])
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test(arguments: BackendUnderTest.allCases)
  func watchingOneDirectionTwiceIsRefused(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    let (readEnd, writeEnd) = try makePipe()
    defer { close(readEnd); close(writeEnd) }
    let log = Log(loop: loop)
    let first = Probe(1, log)
    let second = Probe(2, log)
    #expect(cloop_watch(loop, first.watcher, readEnd, Int32(CLOOP_READABLE), probeFired, first.opaque) == 0)
    #expect(cloop_watch(loop, second.watcher, readEnd, Int32(CLOOP_READABLE), probeFired, second.opaque) == -EEXIST)
    #expect(cloop_watch(loop, second.watcher, -1, Int32(CLOOP_READABLE), probeFired, second.opaque) == -EBADF)
    #expect(cloop_unwatch(loop, first.watcher) == 1)
    #expect(cloop_loop_free(loop) == 0)
  }
}
