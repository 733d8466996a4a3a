import Glibc
import Testing
@testable import TinyAsync

/// The clock a test's loop runs on.
enum TestClock {
  /// The system's monotonic clock: for tests where other threads or the
  /// network take part, whose timing the loop cannot know.
  case real
  /// A manual clock at ``manualClockStart`` (`EventLoop(manualClockAt:)`):
  /// it stands still while anything is ready and jumps to the next timer
  /// when the loop would wait for it. Timers then fire exactly on time and
  /// no test sleeps: for single-threaded timer and timeout tests.
  case manual
}

/// Where a manual clock starts: far from zero, as the real one is.
let manualClockStart = Duration.seconds(1_000_000)

/// A loop on `backend` and `clock`; a backend that cannot run here cancels
/// the test (case) with the reason instead of passing silently.
func makeLoop(_ backend: EventLoop.Backend, clock: TestClock = .real) throws -> EventLoop {
  do {
    switch clock {
    case .real: return try EventLoop(backend: backend)
    case .manual: return try EventLoop(backend: backend, manualClockAt: manualClockStart)
    }
  } catch {
    if error == .backendUnavailable {
      // The console reporter shows a cancelled case as passed: say SKIP aloud.
      print("SKIP: \(backend) unavailable here: \(error.message)")
      try Test.cancel("SKIP: \(backend) unavailable here: \(error.message)")
    }
    throw error
  }
}

/// An object whose lifetime the tests watch through a weak reference.
final class Token {}

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

/// A log that threads share. A pthread mutex rather than
/// `Synchronization.Mutex`, which ThreadSanitizer cannot see on Linux.
final class SharedLog<Entry: Sendable>: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private var entries: [Entry] = []  // guarded by `mutex`

  init() {
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  func append(_ entry: Entry) {
    pthread_mutex_lock(mutex)
    entries.append(entry)
    pthread_mutex_unlock(mutex)
  }

  var all: [Entry] {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return entries
  }
}

/// Carries a loop-confined value out of `runUntilComplete` on the same
/// thread (the tests' stand-in for a result type that is `Sendable`).
struct LoopThreadBox<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}

/// A token of the calling thread, for "which thread runs this" checks
/// across an `await`. Not `pthread_self()`: glibc declares it `const`, so in
/// a release build the optimizer may reuse a value read before the await
/// (and it did: every check then said "the loop's thread").
func currentThreadToken() -> Int {
  if let token = pthread_getspecific(threadTokenKey) { return Int(bitPattern: token) }
  let token = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)  // freed when the thread ends
  pthread_setspecific(threadTokenKey, token)
  return Int(bitPattern: token)
}

private let threadTokenKey: pthread_key_t = {
  var key = pthread_key_t()
  precondition(pthread_key_create(&key, { $0?.deallocate() }) == 0)
  return key
}()
