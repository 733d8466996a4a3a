/// A task spawned with ``EventLoop/spawn(name:_:)``: its result (a
/// ``Future``), its name and its Swift task, on the loop's list of live
/// work until its body ends.
@usableFromInline
final class SpawnedTask<Value>: SpawnedNode, @unchecked Sendable {
  let future: Future<Value>
  private let givenName: String?
  private let number: Int
  @exclusivity(unchecked) var task: Task<Void, Never>?

  /// `future` comes from the caller (`spawn`, inlined into the caller's
  /// module), as for `FiberState`: one runtime metadata lookup less.
  @usableFromInline
  init(future: Future<Value>, name: String?, number: Int) {
    self.future = future
    givenName = name
    self.number = number
  }

  /// Made when asked for: formatting `task-N` at every spawn cost more
  /// than the rest of the spawn's own bookkeeping.
  var name: String { givenName ?? "task-\(number)" }

  deinit {
    future.reportUnretrieved(owner: "task '\(name)' (TaskHandle<\(Value.self)>)")
  }

  override func cancel() {
    task?.cancel()
  }
}
