internal import CLoop
internal import Glibc

/// Waits until a file descriptor that the caller owns is readable or
/// writable, on the loop (asyncio's `add_reader` / `add_writer`, as an
/// await): the way to drive a C library that owns its socket — libpq,
/// libcurl's multi interface, a DNS resolver — from code on an
/// ``EventLoop``. The library does its own non-blocking I/O; when it says
/// "would block", wait in the direction it needs and call it again.
///
/// ```swift
/// try EventLoop.run {
///     let fd = library_socket()              // a non-blocking socket the library owns
///     let watcher = try FileDescriptorWatcher(fd: fd)
///     defer { watcher.close() }              // before the library closes fd
///     while library_step(fd) == -EAGAIN {    // its own recv, say
///         try await watcher.readable()
///     }
/// }
/// ```
///
/// Each wait parks only the calling task (or fiber: the same names without
/// `await`), throws ``TinyAsyncError/cancelled`` when it is cancelled and
/// ``TinyAsyncError/timedOut`` in an expired ``withTimeout(_:_:)``; inside
/// a ``withShield(timeout:isolation:_:)`` it ignores the cancellation. A
/// wait registers the descriptor for itself and stops watching when it
/// ends, whichever way: two `epoll_ctl` calls, or an io_uring poll and its
/// removal, per wait. Readiness is level-triggered and not consumed: the
/// library's next call may still find nothing to do (wait again). An error
/// or hang-up on the descriptor counts as ready in both directions, so the
/// library's own syscall sees it.
///
/// The rules:
/// - **The watcher does not own the descriptor**: it never reads, writes or
///   closes it. Whoever owns it closes it — after ``close()``.
/// - Loop-confined: made, waited on and closed on its loop's thread (not
///   `Sendable`); anything else stops the program with a message.
/// - One waiter per direction at a time: a second task or fiber waiting
///   until the same watcher is readable while one does stops the program
///   with a message, as two concurrent readers of a ``TCPConnection`` do.
///   A reader and a writer at once are fine.
/// - A descriptor is watched in each direction by one party on the loop:
///   waiting on a descriptor that another watcher, or a TinyAsync
///   connection, waits on in the same direction throws
///   ``TinyAsyncError/system(errno:message:context:)`` with `EEXIST`.
/// - **Close the watcher before the descriptor.** If the descriptor is
///   closed underneath a wait, the wait does not end by itself (epoll
///   drops a closed descriptor from its set without a word; io_uring's poll
///   keeps the file open): ``close()`` ends it with
///   ``TinyAsyncError/closed``. A wait that starts on a descriptor closed
///   already throws ``TinyAsyncError/closed`` (`EBADF`).
public final class FileDescriptorWatcher {
  /// The loop the watcher belongs to.
  public let loop: EventLoop
  /// The descriptor watched; the caller's, never closed here.
  public let fd: Int32
  /// `true` once ``close()`` was called.
  public private(set) var isClosed = false

  /// The two directions' C watchers, `[0]` readable and `[1]` writable:
  /// active only while a wait is parked. Shared by both fronts, as there is
  /// one waiter per direction.
  private let records = Pinned(cloop_watcher(), count: 2)
  /// What a fiber waiting in each direction parks on (`cloop_await`); the
  /// watcher's callback, or ``close()``, completes it.
  private let fiberFutures = Pinned(cloop_future(), count: 2)
  private var readWaiter = Waiter.none
  private var writeWaiter = Waiter.none

  private enum Waiter {
    case none
    case task(DescriptorWait)
    case fiber
  }

  enum Direction: Int {
    case readable = 0, writable = 1
    var cValue: Int32 { self == .readable ? Int32(CLOOP_READABLE) : Int32(CLOOP_WRITABLE) }
  }

  /// Watches `fd`, which stays the caller's, on `loop` (by default the one
  /// running on this thread). Nothing is registered until a wait.
  ///
  /// - Throws: ``TinyAsyncError/closed`` (`EBADF`) when `fd` is not an open
  ///   descriptor; ``TinyAsyncError/system(errno:message:context:)`` with `EPERM`
  ///   for one that cannot be polled (a regular file, a directory, a block
  ///   device: they are always ready, and epoll refuses them).
  public init(fd: Int32, on loop: EventLoop? = nil) throws(TinyAsyncError) {
    let loop = loop ?? EventLoop.running(for: "FileDescriptorWatcher(fd:)")
    loop.checkThread("FileDescriptorWatcher(fd:)")
    guard fd >= 0 else { throw TinyAsyncError(code: -EBADF) }
    var st = stat()
    if fstat(fd, &st) != 0 { throw TinyAsyncError(code: -errno) }
    let type = st.st_mode & S_IFMT
    if type == S_IFREG || type == S_IFDIR || type == S_IFBLK { throw TinyAsyncError(code: -EPERM) }
    self.loop = loop
    self.fd = fd
    cloop_watcher_init(records.pointer)
    cloop_watcher_init(records.pointer + 1)
  }

  // MARK: Waiting, async

  /// Suspends the calling task until the descriptor is readable (or has an
  /// error or hang-up pending).
  ///
  /// - Throws: ``TinyAsyncError/closed`` after or during ``close()``, or
  ///   when the descriptor was closed before the wait began;
  ///   ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``;
  ///   `EEXIST` when something else on the loop watches it for reading.
  public nonisolated(nonsending) func readable() async throws(TinyAsyncError) {
    try await wait(.readable, "FileDescriptorWatcher.readable()")
  }

  /// Suspends the calling task until the descriptor is writable (or has an
  /// error or hang-up pending). The errors of `readable()`.
  public nonisolated(nonsending) func writable() async throws(TinyAsyncError) {
    try await wait(.writable, "FileDescriptorWatcher.writable()")
  }

  private nonisolated(nonsending) func wait(
    _ direction: Direction, _ operation: StaticString
  ) async throws(TinyAsyncError) {
    try begin(direction, operation)
    let wait = DescriptorWait(self, direction, record: records.pointer + direction.rawValue)
    setWaiter(direction, .task(wait))
    let result = await wait.wait()
    setWaiter(direction, .none)
    // A readiness that raced with close() loses: the caller asked to stop.
    if isClosed { throw .closed }
    try result.get()
  }

  // MARK: Waiting, in a fiber

  /// Parks the calling fiber until the descriptor is readable: the fiber
  /// form of `readable()`, with its errors. Outside a fiber it stops
  /// the program with a message.
  @available(*, noasync, message: "in async code, use try await readable()")
  public func readable() throws(TinyAsyncError) {
    try waitInFiber(.readable, "FileDescriptorWatcher.readable()")
  }

  /// Parks the calling fiber until the descriptor is writable: the fiber
  /// form of `writable()`.
  @available(*, noasync, message: "in async code, use try await writable()")
  public func writable() throws(TinyAsyncError) {
    try waitInFiber(.writable, "FileDescriptorWatcher.writable()")
  }

  /// Not `cloop_wait_fd`, whose watcher lives in the C core where
  /// ``close()`` cannot reach it: the fiber parks on this watcher's own
  /// future, which the watcher's callback or ``close()`` completes. The
  /// same C steps otherwise (watch, await, unwatch).
  private func waitInFiber(_ direction: Direction, _ operation: StaticString) throws(TinyAsyncError) {
    requireFiber(operation)
    try begin(direction, operation)
    let record = records.pointer + direction.rawValue
    let future = fiberFutures.pointer + direction.rawValue
    cloop_future_init(future, loop.cLoop)
    let woken: cloop_fn = direction == .readable ? fiberReadable : fiberWritable
    let me = Unmanaged.passUnretained(self).toOpaque()
    _ = try TinyAsyncError.check(cloop_watch(loop.cLoop, record, fd, direction.cValue, woken, me))
    setWaiter(direction, .fiber)
    let rc = fiberSuspend(operation) { cloop_await(future, nil) }
    _ = cloop_unwatch(loop.cLoop, record)  // interrupted: still watching
    setWaiter(direction, .none)
    if isClosed { throw .closed }
    if rc < 0 { throw TinyAsyncError(code: rc) }
  }

  /// The watcher's callback for a fiber's wait: stop watching (it is
  /// level-triggered and would fire each iteration until the fiber runs)
  /// and wake the fiber.
  fileprivate func fiberWoken(_ direction: Direction) {
    _ = cloop_unwatch(loop.cLoop, records.pointer + direction.rawValue)
    _ = cloop_future_set_result(fiberFutures.pointer + direction.rawValue, 0)
  }

  // MARK: Closing

  /// Stops watching: a wait in progress, in either direction and on either
  /// front, throws ``TinyAsyncError/closed``, and so does every wait after.
  /// The descriptor stays open: it is its owner's to close, after this.
  /// Closing again does nothing.
  public func close() {
    loop.checkThread("FileDescriptorWatcher.close()")
    if isClosed { return }
    isClosed = true
    for direction in [Direction.readable, .writable] {
      switch waiter(direction) {
      case .none: break
      case .task(let wait): wait.interrupt(.closed)  // stops its C watcher, resumes the task
      case .fiber:
        _ = cloop_unwatch(loop.cLoop, records.pointer + direction.rawValue)
        _ = cloop_future_set_error(fiberFutures.pointer + direction.rawValue, -EBADF)
      }
      setWaiter(direction, .none)
    }
  }

  // MARK: The waiters

  /// The checks every wait makes, in both forms.
  private func begin(_ direction: Direction, _ operation: StaticString) throws(TinyAsyncError) {
    loop.checkThread(operation)
    guard !isClosed else { throw .closed }
    if case .none = waiter(direction) { return }
    misuse(
      "\(operation): another task or fiber is already waiting until this FileDescriptorWatcher's fd \(fd) is \(direction) (one waiter per direction)"
    )
  }

  private func waiter(_ direction: Direction) -> Waiter {
    direction == .readable ? readWaiter : writeWaiter
  }

  private func setWaiter(_ direction: Direction, _ waiter: Waiter) {
    if direction == .readable { readWaiter = waiter } else { writeWaiter = waiter }
  }
}

@available(*, unavailable, message: "a FileDescriptorWatcher belongs to its loop's thread")
extension FileDescriptorWatcher: Sendable {}

/// The fiber waits' callbacks, one per direction; the argument is the
/// watcher, unretained: the waiting fiber holds it.
private let fiberReadable: cloop_fn = { arg in
  Unmanaged<FileDescriptorWatcher>.fromOpaque(arg!).takeUnretainedValue().fiberWoken(.readable)
}
private let fiberWritable: cloop_fn = { arg in
  Unmanaged<FileDescriptorWatcher>.fromOpaque(arg!).takeUnretainedValue().fiberWoken(.writable)
}
