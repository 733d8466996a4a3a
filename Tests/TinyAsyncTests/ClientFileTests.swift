// A client file as users write them: Foundation and TinyAsync imported
// side by side. Swift's `Task { }` and Glibc's `sleep(_:)` must keep their
// meaning here: TinyAsync exports no `Task` and no `sleep(_:)` that could
// shadow them (its sleep is `sleep(for:)`, its task handle `TaskHandle`).
import Foundation
import Testing
import TinyAsync

@Suite("A file importing TinyAsync and Foundation")
struct ClientFileTests {
  @Test func swiftTaskAndGlibcSleepKeepTheirMeaning() async throws {
    let task = Task { 6 * 7 }  // Swift's Task, on the global executor
    let value: Int = await task.value
    #expect(value == 42)
    #expect(type(of: task) == Task<Int, Never>.self)

    let start = Date()
    let left: UInt32 = sleep(1)  // Glibc's sleep: blocks this thread 1 s
    #expect(left == 0)
    #expect(Date().timeIntervalSince(start) >= 0.9)
  }

  @Test func bothSleepsInOneFile() throws {
    let loop = try EventLoop()
    let ok = try loop.runUntilComplete { () async throws -> Bool in
      try await sleep(for: .milliseconds(1))  // TinyAsync's, on the loop
      return usleep(0) == 0
    }
    #expect(ok)
  }
}
