// tinyasync-bench: the Swift side of ../../../shared/peers/WORKLOADS.md,
// run by bench/project-bench (which builds it in release).
//
//   tinyasync-bench WORKLOAD --impl async|fiber|fiber-shared [--n N]
//
// async (impl tinyasync-async): callbacks, future, spawn, sleepers.
// fiber (impl tinyasync-fiber): switch, future, spawn, sleepers.
// fiber-shared (impl tinyasync-fiber-shared): spawn, sleepers, their
// fibers on the loop's shared stack (FiberStack.shared).
// floor (impls tinyasync-floor-continuation, -floor-task,
// -floor-fiber-switch): future, spawn, switch with nothing of TinyAsync's
// on the path (Floors.swift says what each leaves out).
// Each run prints its RESULT lines on stdout; one impl per process, so that
// peak RSS (MiB) is that impl's alone. A failed check exits 1.
// (Workloads.swift holds the code: globals here are main-actor isolated.)
import Glibc

var arguments = CommandLine.arguments.dropFirst()
guard let workload = arguments.popFirst() else { usage() }
var impl: String?
var n: Int?
while let argument = arguments.popFirst() {
  switch argument {
  case "--impl": impl = arguments.popFirst()
  case "--n":
    guard let text = arguments.popFirst(), let value = Int(text), value > 0 else { usage() }
    n = value
  case let option where option.hasPrefix("--n="):
    guard let value = Int(option.dropFirst(4)), value > 0 else { usage() }
    n = value
  default: usage()
  }
}
guard let impl, let run = workloads[impl]?[workload] else { usage() }
do {
  try run(n ?? defaultN[workload]!)
} catch {
  fail("\(workload) \(impl): \(error)")
}
