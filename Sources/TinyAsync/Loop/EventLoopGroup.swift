internal import CLoop
internal import Glibc
public import Logging
import Synchronization

/// N ``EventLoop``s, each on a thread of its own: thread-per-core and
/// shared-nothing, as SwiftNIO's `MultiThreadedEventLoopGroup`. Each loop
/// is a loop of today (its own backend, io_uring ring, timers, tasks and
/// fiber stacks); a task, a fiber and a connection stay on the loop that
/// started them. Between loops there is one path, the target loop's
/// ``ThreadSafeHandle``: ``submit(on:_:)`` runs a `Sendable` closure on a
/// loop and brings its `Sendable` result back; ``serve(host:port:backlog:distribution:_:)``
/// (tasks) and ``serveFibers(host:port:backlog:distribution:_:)`` (fibers)
/// give each loop a listener of its own on one port (`SO_REUSEPORT`), so
/// the kernel spreads the connections, or one acceptor handing them out. `Sendable`: use it from any thread.
///
/// Each loop is created on its thread, and runs there until
/// ``shutdown(deadline:)`` (io_uring's `SINGLE_ISSUER` ring must be used
/// by one thread only): the thread makes its ``EventLoop``, then runs
/// ``EventLoop/runUntilComplete(_:)`` of a main task that waits for the
/// shutdown, drains, and returns, after which `runUntilComplete` cancels
/// and finishes what is left, as it does for one loop.
///
/// Why N Swift loops on threads of this type's own rather than the C
/// core's `cloop_group`: a Swift ``EventLoop`` owns its C loop and the
/// Swift state around it (the ready queue of Swift jobs, the thread-safe
/// queue, the list of spawned tasks), while `cloop_group` makes, drains,
/// cancels and frees C loops and C tasks only. On top of it, the Swift
/// layer would need a second, borrowing kind of `EventLoop`, and a drain
/// and cancel of Swift tasks inside its stop hooks that
/// `runUntilComplete` already is; here the group is the existing public
/// surface (``EventLoop/init(backend:fiberStackSize:logger:)``,
/// `runUntilComplete`, ``EventLoop/spawn(name:isolation:_:)``,
/// ``ThreadSafeHandle``, ``TCPListener``'s `reusePort`) and about 300
/// lines. What it does not take from the C group: pinning loop i to CPU i.
///
/// ```swift
/// let group = try EventLoopGroup(loops: 2)
/// let port = try group.serve(port: 0) {
///     { connection in  // made once per loop, runs on the loop that accepted
///         while let bytes = try? await connection.read(max: 4096), !bytes.isEmpty {
///             try? await connection.write(bytes)
///         }
///     }
/// }
/// print("echo on port \(port), \(group.loops.count) loops")
/// try group.shutdown(deadline: .seconds(5))
/// ```
public final class EventLoopGroup: Sendable {
  /// The loops, in order; each belongs to its own thread (use one from
  /// elsewhere through ``submit(on:_:)`` or its ``EventLoop/threadSafeHandle``).
  /// After ``shutdown(deadline:)`` they are ended: every call on them stops
  /// with a message.
  public let loops: [EventLoop]

  /// Per loop: its group-side state (loop thread only) and the completer
  /// of the future its main task waits on for the drain time.
  let members: [LoopThreadOnly<GroupMember>]
  private let stops: [FutureCompleter<Duration>]
  private let threads: [pthread_t]
  private let shared: GroupShared
  /// ``next()``'s counter: one relaxed add, shared by its callers only.
  private let counter = Atomic<Int>(0)
  private let isShutDown = Atomic<Bool>(false)

  /// Starts `loops` loops, each on a thread of its own, and returns once
  /// every loop exists and runs.
  ///
  /// - Parameters:
  ///   - loops: How many; `nil` for the CPUs the process may run on (its
  ///     affinity mask, `sched_getaffinity`, which `taskset` and containers
  ///     narrow), at least 1.
  ///   - backend: Every loop's poller (see ``EventLoop/Backend``).
  ///   - logger: Every loop's logger (``EventLoop/logger``), with the
  ///     metadata `loop` set to its index; `nil` for the loop's default.
  /// - Throws: What ``EventLoop/init(backend:fiberStackSize:logger:)``
  ///   throws on a loop's thread (e.g. ``TinyAsyncError/backendUnavailable``;
  ///   then no loop is left running), or `EAGAIN` when a thread cannot be
  ///   started.
  public init(loops: Int? = nil, backend: EventLoop.Backend = .automatic, logger: Logger? = nil) throws(TinyAsyncError) {
    let count = loops ?? Self.affinityCPUCount
    ensure(count >= 1, "EventLoopGroup(loops:): \(count) loops; a group has at least 1")
    let shared = GroupShared(count: count)
    var started: [(pthread_t, ThreadLatch<Result<GroupLoopStart, TinyAsyncError>>)] = []
    for index in 0..<count {
      let latch = ThreadLatch<Result<GroupLoopStart, TinyAsyncError>>()
      var loopLogger = logger
      loopLogger?[metadataKey: "loop"] = "\(index)"
      let thread = startLoopThread { [loopLogger] in
        Self.loopThread(backend: backend, logger: loopLogger, shared: shared, latch: latch)
      }
      guard let thread else {
        shared.loopCount.subtract(count - index, ordering: .relaxed)
        break
      }
      started.append((thread, latch))
    }
    // Every thread posts once: its loop, or why it has none.
    var starts: [GroupLoopStart] = []
    var failure: TinyAsyncError? = started.count < count ? TinyAsyncError(code: -EAGAIN) : nil
    for (_, latch) in started {
      switch latch.wait() {
      case .success(let start): starts.append(start)
      case .failure(let error): failure = failure ?? error
      }
    }
    if let failure {
      // Threads without a loop have already left the barrier count.
      for start in starts { start.stop.succeed(.zero) }
      for (thread, _) in started { pthread_join(thread, nil) }
      throw failure
    }
    self.loops = starts.map(\.loop)
    self.members = starts.map(\.member)
    self.stops = starts.map(\.stop)
    self.threads = started.map(\.0)
    self.shared = shared
  }

  /// A group dropped without ``shutdown(deadline:)`` shuts down with no
  /// drain. If the last reference goes on one of its own loops (a closure
  /// it ran held it), its threads cannot be joined there: they are told to
  /// stop and detached, and end by themselves.
  deinit {
    guard !isShutDown.exchange(true, ordering: .relaxed) else { return }
    for stop in stops { stop.succeed(.zero) }
    let onOwnLoop = EventLoop.current.map { index(of: $0) != nil } ?? false
    for thread in threads {
      if onOwnLoop { pthread_detach(thread) } else { pthread_join(thread, nil) }
    }
  }

  /// The CPUs in the process's affinity mask (at least 1): the C group's
  /// default (`sched_getaffinity`, which Swift's Glibc does not import).
  static var affinityCPUCount: Int { Int(cloop_group_default_size()) }

  /// The next loop, round-robin (one relaxed atomic add). Any thread.
  public func next() -> EventLoop {
    let n = counter.wrappingAdd(1, ordering: .relaxed).oldValue
    return loops[Int(UInt(bitPattern: n) % UInt(loops.count))]
  }

  /// The index of `loop` in ``loops``, or `nil` if it is not this group's.
  public func index(of loop: EventLoop) -> Int? {
    loops.firstIndex { $0 === loop }
  }

  /// Stops the group gracefully and ends its threads. Each loop, on its
  /// own thread: closes the listeners of ``serve(host:port:backlog:distribution:_:)``
  /// (no new connection is accepted), gives its spawned tasks and fibers
  /// `deadline` to end by themselves (a drain that ends as soon as the last
  /// one does), cancels the ones still running and runs them until they
  /// have unwound (an error nobody retrieves is logged, as on one loop);
  /// then, once every loop has got that far (each keeps running meanwhile,
  /// for the replies still owed to it), it is freed and its thread ends.
  /// Blocks until every thread has been joined.
  ///
  /// Any thread but the group's own: from one of its loops it would wait
  /// for its own thread to end, and stops the program with a message. Once
  /// shut down, calling it again does nothing.
  ///
  /// - Throws: The first error a loop's run ended with (a poller failure),
  ///   after every thread has ended.
  public func shutdown(deadline: Duration) throws(TinyAsyncError) {
    if let current = EventLoop.current, let index = index(of: current) {
      misuse("EventLoopGroup.shutdown(deadline:) was called on the group's loop \(index): it waits for every loop's thread to end, that one's too, which cannot end while it waits; call it from a thread that runs none of the group's loops (the one that made the group, say), or hand it to one with Thread/pthread")
    }
    guard !isShutDown.exchange(true, ordering: .relaxed) else { return }
    for stop in stops { stop.succeed(max(.zero, deadline)) }
    for thread in threads { pthread_join(thread, nil) }
    if let error = shared.firstError { throw error }
  }

  /// On one of the group's loops: returns once the group's shutdown has
  /// begun there, as its listeners close and its drain starts. The moment
  /// for a server's per-loop code to tell idle connections to go and busy
  /// ones to finish up, so that the drain ends early.
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` (as every wait of the loop's:
  ///   the drain's deadline passed, say), ``TinyAsyncError/timedOut``.
  ///
  /// ```swift
  /// try group.serve(port: 8080) {
  ///     let loop = EventLoop.current!
  ///     let idle = IdleConnections()  // this loop's own
  ///     loop.spawn {
  ///         try await group.waitForShutdown()
  ///         idle.closeAll()
  ///     }
  ///     return { connection in await serveHTTP(connection, idle) }
  /// }
  /// ```
  public func waitForShutdown() async throws(TinyAsyncError) {
    let loop = EventLoop.running(for: "EventLoopGroup.waitForShutdown()")
    guard let index = index(of: loop) else {
      misuse("EventLoopGroup.waitForShutdown() was called on a loop that is not one of the group's; call it from a task on one of group.loops")
    }
    guard let stopping = members[index].value.stopping else { return }
    try await stopping.wait()
  }

  // MARK: A loop's thread

  /// The body of loop thread: make the loop, tell the group, run until the
  /// shutdown, drain, pass the barrier, free the loop.
  private static func loopThread(
    backend: EventLoop.Backend, logger: Logger?, shared: GroupShared,
    latch: ThreadLatch<Result<GroupLoopStart, TinyAsyncError>>
  ) {
    let loop: EventLoop
    do {
      loop = try EventLoop(backend: backend, logger: logger)
    } catch {
      shared.loopCount.subtract(1, ordering: .relaxed)  // leaves the barrier
      latch.post(.failure(error))
      return
    }
    let member = LoopThreadOnly(GroupMember(loop: loop))
    let stop = Future<Duration>(on: loop)
    // Taking a completer takes a ThreadSafeHandle, which turns off the
    // deadlock check: the main task waits on what only another thread brings.
    latch.post(.success(GroupLoopStart(loop: loop, member: member, stop: stop.threadSafeCompleter)))
    do {
      try loop.runUntilComplete {
        let drain = try await stop.value
        member.value.beginShutdown()
        if loop.hasLiveSpawned {
          let drained = Future<Void>()
          loop.onSpawnedDrained = { drained.succeed(()) }
          _ = try? await withTimeout(drain) { try await drained.value }
          loop.onSpawnedDrained = nil
        }
        // Returning cancels what is left and runs it to its end.
      }
    } catch {
      shared.note(error)
    }
    // The barrier: another loop may still owe this one a message (a
    // submitted call's answer, a task's last job), so keep running it
    // until every loop has finished its tasks. 1 ms polls, at shutdown only.
    _ = shared.finished.add(1, ordering: .acquiringAndReleasing)
    while shared.finished.load(ordering: .acquiring) < shared.loopCount.load(ordering: .relaxed) {
      do { try loop.runOnce(timeout: .milliseconds(1)) } catch { shared.note(error); break }
    }
    member.value.end()
    loop.retire()
  }
}

/// What a loop's thread hands the group once its loop runs.
struct GroupLoopStart: Sendable {
  let loop: EventLoop
  let member: LoopThreadOnly<GroupMember>
  let stop: FutureCompleter<Duration>
}

/// The group's state its threads share: the barrier's counts and the
/// first error a loop ended with.
///
/// `@unchecked Sendable`: the counts are atomics; `error` is guarded by
/// `mutex` (a pthread mutex, which ThreadSanitizer sees).
final class GroupShared: @unchecked Sendable {
  /// Loops that take part in the barrier (a thread that made none leaves).
  let loopCount: Atomic<Int>
  /// Loops whose tasks have all ended.
  let finished = Atomic<Int>(0)
  private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
  private var error: TinyAsyncError?  // guarded by `mutex`

  init(count: Int) {
    loopCount = Atomic(count)
    mutex.initialize(to: pthread_mutex_t())
    pthread_mutex_init(mutex, nil)
  }

  deinit {
    pthread_mutex_destroy(mutex)
    mutex.deallocate()
  }

  func note(_ error: any Error) {
    pthread_mutex_lock(mutex)
    if self.error == nil { self.error = (error as? TinyAsyncError) ?? TinyAsyncError(code: -EIO) }
    pthread_mutex_unlock(mutex)
  }

  var firstError: TinyAsyncError? {
    pthread_mutex_lock(mutex)
    defer { pthread_mutex_unlock(mutex) }
    return error
  }
}

/// A group's state on one loop (that loop's thread only): the listeners
/// ``EventLoopGroup/serve(host:port:backlog:distribution:_:)`` started
/// there, closed at shutdown before the drain, and the handlers of the
/// connections a group's acceptor on another loop hands to this one.
final class GroupMember {
  private var listeners: [(serve: Int, listener: TCPListener)] = []
  private var handlers: [Int: GroupHandler] = [:]
  private(set) var isStopping = false
  /// Set when the shutdown begins here (see `waitForShutdown()`); let go
  /// of at the end, on this thread (it holds the loop).
  private(set) var stopping: Event?

  init(loop: EventLoop) { stopping = Event(on: loop) }

  func add(_ listener: TCPListener, serve: Int) { listeners.append((serve, listener)) }

  /// This loop's handler for the connections one `serve` call's acceptor
  /// hands over.
  func setHandler(_ handler: GroupHandler, serve: Int) { handlers[serve] = handler }

  /// A connection handed over by an acceptor: served here, unless the
  /// shutdown has begun (its tasks are draining or being cancelled) or
  /// its `serve` call was undone; then it is closed unserved.
  func receive(_ parcel: HandedConnection, serve: Int, on loop: EventLoop) {
    let fd = parcel.take()
    guard fd >= 0 else { return }
    guard !isStopping, let handler = handlers[serve] else {
      _ = Glibc.close(fd)
      return
    }
    handler.serve(TCPConnection(fd: fd, loop: loop), on: loop)
  }

  /// Closes the listeners of one `serve` call (its set-up failed on
  /// another loop) and forgets its handler.
  func closeListeners(serve: Int) {
    for entry in listeners where entry.serve == serve { entry.listener.close() }
    listeners.removeAll { $0.serve == serve }
    handlers[serve] = nil
  }

  /// Closes them all (the acceptors end, and no new connection comes)
  /// and wakes the tasks in `waitForShutdown()`.
  func beginShutdown() {
    isStopping = true
    for entry in listeners { entry.listener.close() }
    listeners.removeAll()
    stopping?.set()
  }

  /// The loop's last moment: nothing of the loop may outlive it here.
  func end() {
    beginShutdown()
    handlers.removeAll()
    stopping = nil
  }
}

/// Starts a POSIX thread running `body` (the default 8 MiB stack, as the
/// process's main thread has), or returns `nil` when it cannot.
private func startLoopThread(_ body: @escaping @Sendable () -> Void) -> pthread_t? {
  final class Box: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  }
  var thread = pthread_t()
  let box = Unmanaged.passRetained(Box(body))
  let rc = pthread_create(&thread, nil, { arg in
    Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
    return nil
  }, box.toOpaque())
  if rc != 0 {
    box.release()
    return nil
  }
  return thread
}
