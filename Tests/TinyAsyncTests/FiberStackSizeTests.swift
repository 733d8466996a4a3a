import Testing
@testable import TinyAsync

/// About 300 to 500 KiB of stack (600 frames of 512 bytes and more): past
/// the default 256 KiB, within 1 MiB.
private func deepFiberBody() -> Int { MisuseTests.recurse(600) }

@Suite("Fiber stack size: EventLoop(fiberStackSize:)")
struct FiberStackSizeTests {
  @Test(arguments: [FiberStack.private, .shared])
  func aLargerStackHoldsWhatTheDefaultCannot(_ stack: FiberStack) throws {
    let loop = try EventLoop(fiberStackSize: 1 << 20)
    let value = try loop.runFiberUntilComplete {
      try loop.spawnFiber(stack: stack) { deepFiberBody() }.get()
    }
    #expect(value == deepFiberBody())
  }

  /// The same body on the default stack overflows: the test above is no
  /// accident of a roomy default. The report gives the size and the option.
  @Test func theDefaultStackOverflowsAndTheReportNamesTheOption() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop()
      _ = try loop.runFiberUntilComplete { deepFiberBody() }
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("its stack is 256 KiB; raise EventLoop(fiberStackSize:)"), "\(text)")
  }

  @Test func aSmallerStackIsWhatTheFibersGet() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      let loop = try EventLoop(fiberStackSize: 64 << 10)
      _ = try loop.runFiberUntilComplete { MisuseTests.recurse(200) }  // about 100 KiB or more
    }
    let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(text.contains("its stack is 64 KiB"), "\(text)")
  }

  @Test func aSizeUnder16KiBIsRefusedByName() {
    var detail = "no error"
    do {
      _ = try EventLoop(fiberStackSize: 8192)
    } catch {
      detail = error.detail ?? "\(error)"
    }
    #expect(detail == "EventLoop(fiberStackSize:): 8192 bytes is under the least, 16384 (16 KiB)")
  }
}
