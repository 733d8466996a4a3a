import CLoop
import Glibc
import Testing

// CLoopTests drive the raw C API from Swift. What the C core does is
// tested from C (Tests/c, one test per feature, each on both backends);
// these tests check what only Swift code can: that the header imports
// into Swift as C programs use it, and that Swift code runs on the C core's
// coroutine stacks.

/// The backends a poller test runs on, once each.
enum BackendUnderTest: String, CaseIterable, Sendable, CustomTestStringConvertible {
  case epoll, uring

  var cValue: cloop_backend {
    switch self {
    case .epoll: CLOOP_BACKEND_EPOLL
    case .uring: CLOOP_BACKEND_URING
    }
  }

  var testDescription: String { rawValue }
}

/// Creates a loop with `options` edited by `configure`, on `backend`
/// (default: auto). A backend that cannot run here cancels the test (case)
/// with the reason instead of passing silently.
func makeLoop(
  _ backend: BackendUnderTest? = nil, _ configure: (inout cloop_options) -> Void = { _ in }
) throws -> OpaquePointer {
  var options = cloop_options()
  cloop_options_init(&options)
  if let backend { options.backend = backend.cValue }
  configure(&options)
  var loop: OpaquePointer?
  let rc = cloop_loop_new(&loop, &options)
  if rc == CLOOP_ENOBACKEND, let backend {
    // The console reporter shows a cancelled case as passed: say SKIP aloud.
    print("SKIP: backend \(backend.rawValue) unavailable here: \(message(rc))")
    try Test.cancel("SKIP: backend \(backend.rawValue) unavailable here: \(message(rc))")
  }
  try #require(rc == 0, "cloop_loop_new: \(message(rc))")
  return try #require(loop)
}

func message(_ code: Int32) -> String { String(cString: cloop_strerror(code)) }

/// `count` zeroed C records in heap memory that does not move while C
/// links them; the caller frees them (after the loop, which may link them).
func records<T>(_ zero: T, count: Int = 1) -> UnsafeMutablePointer<T> {
  let p = UnsafeMutablePointer<T>.allocate(capacity: count)
  p.initialize(repeating: zero, count: count)
  return p
}

/// Starts a POSIX thread running `body`; join it with `joinThread`.
func startThread(_ body: @escaping @Sendable () -> Void) -> pthread_t {
  final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
  var thread = pthread_t()
  let rc = pthread_create(&thread, nil, { arg in
    Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
    return nil
  }, Unmanaged.passRetained(Box(body)).toOpaque())
  precondition(rc == 0, "pthread_create: \(rc)")
  return thread
}

func joinThread(_ thread: pthread_t) {
  let rc = pthread_join(thread, nil)
  precondition(rc == 0, "pthread_join: \(rc)")
}

/// A value that crosses threads in a test that synchronizes by other means.
struct Unchecked<Value>: @unchecked Sendable {
  let value: Value
}
