import Testing
import TinyAsync

/// No task error is dropped silently: a spawned task or a future that
/// failed, and whose error nobody read, is reported through swift-log when
/// it goes away (asyncio's "exception was never retrieved"). Each case runs
/// in a child process, whose output the test reads.
@Suite("Errors nobody retrieved are logged")
struct UnretrievedErrorTests {
  struct Lost: Error {}

  @Test func aFailedTaskNobodyAwaitedIsLogged() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.run {
        EventLoop.current!.spawn(name: "careless") { () async throws -> Int in
          try await sleep(for: .zero)
          throw UnretrievedErrorTests.Lost()
        }
        try await sleep(for: .milliseconds(5))
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    #expect(output.contains("task 'careless' (TaskHandle<Int>) failed and its error was never retrieved: Lost()"), "\(output)")
  }

  @Test func aFailedFutureNobodyReadIsLoggedWithItsType() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.run {
        let future = Future<String>()
        future.fail(UnretrievedErrorTests.Lost())
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    #expect(output.contains("Future<String> failed and its error was never retrieved: Lost()"), "\(output)")
  }

  @Test func aFailureSomeoneReadIsNotLogged() async {
    let result = await #expect(
      processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]
    ) {
      try EventLoop.run {
        let t = EventLoop.current!.spawn { () async throws -> Int in throw UnretrievedErrorTests.Lost() }
        _ = try? await t.value
        let cancelled = EventLoop.current!.spawn { try await sleep(for: .seconds(10)) }
        cancelled.cancel()  // a cancellation is no error to report
        try await sleep(for: .milliseconds(5))
      }
    }
    let output = String(decoding: (result?.standardOutputContent ?? []) + (result?.standardErrorContent ?? []), as: UTF8.self)
    #expect(!output.contains("never retrieved"), "\(output)")
  }
}
