import Glibc
import Testing
@testable import TinyAsync

@Suite("ThreadSafeHandle: calls from other threads")
struct ThreadSafeHandleTests {
  @Test(arguments: [EventLoop.Backend.epoll, .ioUring])
  func callsFromFourThreadsArriveOnceInPerThreadOrder(_ backend: EventLoop.Backend) throws {
    let loop = try makeLoop(backend)
    let threads = 4
    let perThread = 2_500
    let handle = loop.threadSafeHandle
    let arrivals = SharedLog<Int>()
    let loopThread = pthread_self()
    let offThread = SharedLog<Bool>()

    loop.ref()  // the last call below unrefs
    let workers = (0..<threads).map { t in
      startThread {
        for i in 0..<perThread {
          handle.call {
            arrivals.append(t * perThread + i)
            if pthread_equal(pthread_self(), loopThread) == 0 { offThread.append(true) }
          }
        }
        handle.call { loop in
          arrivals.append(-1)  // this thread is done
          if arrivals.all.filter({ $0 == -1 }).count == threads { loop.unref() }
        }
      }
    }
    try loop.runUntilIdle()
    workers.forEach(joinThread)

    let all = arrivals.all.filter { $0 >= 0 }
    #expect(all.count == threads * perThread)
    #expect(Set(all).count == threads * perThread)  // each exactly once
    for t in 0..<threads {
      let mine = all.filter { $0 / perThread == t }
      #expect(mine == Array(t * perThread ..< (t + 1) * perThread))  // FIFO per thread
    }
    #expect(offThread.all.isEmpty)  // every closure ran on the loop thread
  }

  @Test func callsWaitForTheLoopAndRunInArrivalOrder() throws {
    let loop = try EventLoop()
    let handle = loop.threadSafeHandle
    let log = SharedLog<String>()
    #expect(handle.call { log.append("a") })
    #expect(handle.call { _ in log.append("b") })
    #expect(log.all.isEmpty)  // nothing runs before the loop does
    loop.callSoon { log.append("soon") }
    while try loop.runOnce(timeout: .milliseconds(100)) {}
    #expect(log.all.sorted() == ["a", "b", "soon"])
    #expect(log.all.firstIndex(of: "a")! < log.all.firstIndex(of: "b")!)
  }

  @Test func aHandleOutlivesItsLoopAndRefusesCalls() throws {
    weak var weakToken: Token?
    var handle: ThreadSafeHandle?
    do {
      let loop = try EventLoop()
      handle = loop.threadSafeHandle
      let token = Token()
      weakToken = token
      let sendableToken = SendableBox(token)
      // Queued but never run: dropping the loop drops it.
      #expect(handle!.call { _ = sendableToken })
    }
    #expect(weakToken == nil)
    let ranAfterwards = SharedLog<Bool>()
    #expect(handle!.call { ranAfterwards.append(true) } == false)
    #expect(ranAfterwards.all.isEmpty)
  }
}

/// Carries a non-Sendable token into a `@Sendable` closure for the lifetime
/// checks above; the closure never touches it from another thread.
struct SendableBox: @unchecked Sendable {
  let value: AnyObject
  init(_ value: AnyObject) { self.value = value }
}
