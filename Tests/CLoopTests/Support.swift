import CLoop
import Glibc
import Testing

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

/// Creates a loop on `backend` (default: auto). A backend that cannot run
/// here cancels the test (case) with the reason instead of passing silently.
func makeLoop(_ backend: BackendUnderTest? = nil) throws -> OpaquePointer {
  var options = cloop_options()
  cloop_options_init(&options)
  if let backend { options.backend = backend.cValue }
  var loop: OpaquePointer?
  let rc = cloop_loop_new(&loop, &options)
  if rc == CLOOP_ENOBACKEND, let backend {
    // The console reporter shows a cancelled case as passed: say SKIP aloud.
    print("SKIP: backend \(backend.rawValue) unavailable here: \(message(rc))")
    try Test.cancel("SKIP: backend \(backend.rawValue) unavailable here: \(String(cString: cloop_strerror(rc)))")
  }
  try #require(rc == 0, "cloop_loop_new: \(String(cString: cloop_strerror(rc)))")
  return try #require(loop)
}

/// What the callbacks of one test saw, in order.
final class Log {
  var order: [Int] = []
  var loop: OpaquePointer?
  init(loop: OpaquePointer? = nil) { self.loop = loop }
}

/// Every probe, kept until the test process exits. In an optimized build
/// Swift may end a local's lifetime at its last use rather than at the end
/// of its scope, and a probe freed while the loop still links its node is
/// a crash (seen in `swift test -c release`). Kept here, a few KiB per
/// test, they stay reachable for LeakSanitizer.
let keptProbes = KeptObjects()

/// A locked list of objects that are never freed; tests run in parallel.
final class KeptObjects: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private var objects: [AnyObject] = []  // guarded by `mutex`

  init() {
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  func keep(_ object: AnyObject) {
    pthread_mutex_lock(mutex)
    objects.append(object)
    pthread_mutex_unlock(mutex)
  }
}

/// A handle, a timer and a watcher in heap memory, all calling back into
/// one Swift object that appends `id` to `log` and then runs `action`.
/// The probe owns the C nodes, which are never freed (see `keptProbes`).
final class Probe {
  let id: Int
  let log: Log
  var action: ((Probe) -> Void)?
  let handle = UnsafeMutablePointer<cloop_handle>.allocate(capacity: 1)
  let timer = UnsafeMutablePointer<cloop_timer>.allocate(capacity: 1)
  let watcher = UnsafeMutablePointer<cloop_watcher>.allocate(capacity: 1)
  var firedAt: UInt64 = 0

  init(_ id: Int, _ log: Log, action: ((Probe) -> Void)? = nil) {
    self.id = id
    self.log = log
    self.action = action
    defer { keptProbes.keep(self) }
    handle.initialize(to: cloop_handle())
    timer.initialize(to: cloop_timer())
    watcher.initialize(to: cloop_watcher())
    let me = Unmanaged.passUnretained(self).toOpaque()
    cloop_handle_init(handle, probeFired, me)
    cloop_timer_init(timer, probeFired, me)
    cloop_watcher_init(watcher)
  }

  var opaque: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

let probeFired: cloop_fn = { arg in
  let probe = Unmanaged<Probe>.fromOpaque(arg!).takeUnretainedValue()
  if let loop = probe.log.loop { probe.firedAt = cloop_now(loop) }
  probe.log.order.append(probe.id)
  probe.action?(probe)
}

/// A small deterministic generator (SplitMix64), so a failing random test
/// fails the same way again.
struct SplitMix64: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// A pointer that crosses threads in tests that synchronize by other means.
struct SendablePointer<T>: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<T>
}

struct SendableLoop: @unchecked Sendable {
  let loop: OpaquePointer
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

func message(_ code: Int32) -> String { String(cString: cloop_strerror(code)) }
