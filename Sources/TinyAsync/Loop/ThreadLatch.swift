internal import Glibc

/// A value one thread hands to another that blocks until it comes: how
/// ``EventLoopGroup`` waits for its loops to exist and to listen. It blocks
/// the waiting thread (a pthread condition), so it is for threads that run
/// no loop.
///
/// A pthread mutex and condition rather than `Synchronization.Mutex`,
/// which ThreadSanitizer cannot see on Linux (see `ThreadSafeQueue`).
///
/// `@unchecked Sendable`: `slot` is guarded by `mutex`.
final class ThreadLatch<Value: Sendable>: @unchecked Sendable {
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
  private var slot: Value?  // guarded by `mutex`

  init() {
    mutex.initialize(to: pthread_mutex_t())
    condition.initialize(to: pthread_cond_t())
    pthread_mutex_init(mutex, nil)
    pthread_cond_init(condition, nil)
  }

  deinit {
    pthread_cond_destroy(condition)
    pthread_mutex_destroy(mutex)
    condition.deallocate()
    mutex.deallocate()
  }

  /// Hands `value` over (the first one counts). Any thread.
  func post(_ value: Value) {
    pthread_mutex_lock(mutex)
    if slot == nil { slot = value }
    pthread_cond_broadcast(condition)
    pthread_mutex_unlock(mutex)
  }

  /// Blocks until a value has been posted, and returns it.
  func wait() -> Value {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    while slot == nil { pthread_cond_wait(condition, mutex) }
    return slot!
  }
}
