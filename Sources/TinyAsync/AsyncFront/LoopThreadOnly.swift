/// A value handed between the loop's own tasks, which all run on its one
/// thread: it never crosses threads, whatever its type.
struct LoopThreadOnly<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}
