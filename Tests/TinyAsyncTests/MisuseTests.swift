import Testing
import TinyAsync

/// Misuse stops the program with a message that names it. Each case runs
/// in a child process (swift-testing exit tests).
@Suite("Misuse stops with a message")
struct MisuseTests {
  @MainActor static func spawnFromTheMainActor() throws {
    let loop = try EventLoop()
    loop.spawn { 1 }  // isolated to the main actor, not to the loop
  }

  @Test func spawningAMainActorClosureStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try await MisuseTests.spawnFromTheMainActor()
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("EventLoop.spawn: the closure is isolated to MainActor"))
  }

  @Test func sleepOutsideALoopStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      try await sleep(for: .milliseconds(1))
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("sleep(for:) needs a running EventLoop"))
  }

  @Test func usingALoopFromAnotherThreadStops() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      let t = startThread { loop.callSoon {} }
      joinThread(t)
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("from a thread that does not own it"))
  }
}
