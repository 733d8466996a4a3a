import CLoop
import Foundation
import Testing

/// What a task body reads and writes; passed to C as the task's argument.
final class TaskProbe {
  let loop: OpaquePointer
  var sleptNs: Int64
  var json = ""
  var finishedAt: UInt64 = 0
  init(loop: OpaquePointer, sleptNs: Int64) {
    self.loop = loop
    self.sleptNs = sleptNs
  }
}

private struct Payload: Codable { var name: String; var values: [Int] }

/// A task body in Swift, running on a CLoop coroutine stack: it sleeps on
/// the loop, then does work that allocates, uses ARC and throws internally
/// (JSONEncoder), then returns its sleep in milliseconds as the result.
private let swiftTaskBody: cloop_task_fn = { arg in
  let probe = Unmanaged<TaskProbe>.fromOpaque(arg!).takeUnretainedValue()
  let r = cloop_sleep(probe.sleptNs)
  if r < 0 { return Int(r) }
  let payload = Payload(name: "task", values: Array(0..<100))
  let data = (try? JSONEncoder().encode(payload)) ?? Data()
  probe.json = String(decoding: data, as: UTF8.self)
  probe.finishedAt = cloop_now(probe.loop)  // a manual clock: exact
  return Int(probe.sleptNs / 1_000_000)
}

@Suite("Tasks on the C coroutine level, driven from Swift")
struct TaskTests {
  @Test("Swift bodies on coroutine stacks: sleep, JSON, a result per task",
        arguments: [CLOOP_SWITCH_ASM, CLOOP_SWITCH_FAST, CLOOP_SWITCH_UCONTEXT])
  func swiftBodiesRunOnCoroutineStacks(mode: cloop_switch) throws {
    let loop = try makeLoop { $0.switch_mode = mode }
    #expect(cloop_loop_switch(loop) == mode)
    // A manual clock (cloop_debug_manual_clock): each sleep ends exactly at
    // its deadline, in an iteration of its own, and the test does not wait.
    let start: UInt64 = 1_000_000_000_000
    cloop_debug_manual_clock(loop, start)

    let probes = [30, 10, 20].map { TaskProbe(loop: loop, sleptNs: Int64($0) * 1_000_000) }
    var tasks: [OpaquePointer?] = Array(repeating: nil, count: probes.count)
    for (i, probe) in probes.enumerated() {
      let arg = Unmanaged.passUnretained(probe).toOpaque()
      #expect(cloop_spawn(loop, &tasks[i], swiftTaskBody, arg, "swift-\(i)") == 0)
    }
    #expect(cloop_run(loop) == 0)

    // Each finished with its own result; they finished in deadline order.
    for (i, task) in tasks.enumerated() {
      let future = cloop_task_future(task)!
      #expect(future.pointee.state == UInt8(CLOOP_DONE))
      #expect(future.pointee.value == Int(probes[i].sleptNs / 1_000_000))
      #expect(probes[i].json.contains("\"values\":[0,1,2"))
    }
    for probe in probes { #expect(probe.finishedAt == start + UInt64(probe.sleptNs)) }
    for task in tasks { cloop_task_release(task) }
    #expect(cloop_loop_free(loop) == 0)
  }
}
