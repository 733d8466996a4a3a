// POSIX threads for the demo. The thread entry is a @convention(c)
// function, so it lives here: in Swift 6 mode, code at the top level of
// main.swift is main-actor isolated.
import Glibc

/// Starts a thread running `body`; wait for it with `joinThread`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
  final class Box {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  }
  var thread = pthread_t()
  let rc = pthread_create(&thread, nil, { arg in
    Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
    return nil
  }, Unmanaged.passRetained(Box(body)).toOpaque())
  precondition(rc == 0, "pthread_create failed: \(rc)")
  return thread
}

func joinThread(_ thread: pthread_t) {
  pthread_join(thread, nil)
}
