internal import CLoop
internal import Glibc

/// A POSIX signal, for ``EventLoop/signals(_:)``.
///
/// ```swift
/// let stops: [Signal] = [.terminate, .interrupt]
/// print(Signal.terminate)  // SIGTERM
/// ```
public struct Signal: Hashable, Sendable, CustomStringConvertible {
  /// The signal's number (`SIGTERM` is 15 on Linux).
  public let rawValue: Int32

  /// The signal numbered `rawValue`.
  public init(_ rawValue: Int32) {
    self.rawValue = rawValue
  }

  /// `SIGTERM`: please stop (what an orchestrator or supervisor sends).
  public static let terminate = Signal(SIGTERM)
  /// `SIGINT`: Ctrl-C.
  public static let interrupt = Signal(SIGINT)
  /// `SIGHUP`: the terminal went away; by convention, reload.
  public static let hangup = Signal(SIGHUP)
  /// `SIGQUIT`.
  public static let quit = Signal(SIGQUIT)
  /// `SIGUSR1`.
  public static let user1 = Signal(SIGUSR1)
  /// `SIGUSR2`.
  public static let user2 = Signal(SIGUSR2)

  /// Its name, e.g. `SIGTERM` (or `signal 42`).
  public var description: String {
    switch rawValue {
    case SIGTERM: "SIGTERM"
    case SIGINT: "SIGINT"
    case SIGHUP: "SIGHUP"
    case SIGQUIT: "SIGQUIT"
    case SIGUSR1: "SIGUSR1"
    case SIGUSR2: "SIGUSR2"
    case SIGCHLD: "SIGCHLD"
    case SIGPIPE: "SIGPIPE"
    case SIGALRM: "SIGALRM"
    case SIGWINCH: "SIGWINCH"
    default: "signal \(rawValue)"
    }
  }
}

/// One C watcher of a ``SignalStream``: the C `cloop_signal`, and the
/// stream its callback reaches. On the heap: it must not move while active.
private struct SignalWatcher {
  var watcher = cloop_signal()
  var stream: UnsafeMutableRawPointer?
}

/// The arrivals of some signals on a loop (asyncio's
/// `add_signal_handler`): an `AsyncSequence` in async code, and ``next()-5hgn``
/// in a fiber. Made by ``EventLoop/signals(_:)``.
///
/// Signals are watched through the loop's `signalfd` (see the C core's
/// `cloop_signal_start`): an arrival is an event of the loop's like any
/// other, never code inside a signal handler, and every stream of the
/// signal in the process sees it. Arrivals that come while nobody waits are
/// kept (up to 64; standard signals coalesce while pending anyway), so no
/// signal is lost between two waits. While a stream is open the loop stays
/// alive. ``close()`` (or dropping the stream) stops watching and restores
/// the signals' previous handling; a waiting ``next()-80d2w`` then returns `nil`.
///
/// Loop-confined: not `Sendable`.
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let listener = try TCPListener(port: 8080)
///     loop.spawn { for try await connection in listener { _ = connection } }
///     for try await signal in try loop.signals(.terminate, .interrupt) {
///         print("stopping on \(signal)")
///         listener.close()  // stop accepting, then drain and return
///         break
///     }
/// }
/// ```
public final class SignalStream {
  /// The loop it watches on.
  public let loop: EventLoop
  /// What it watches.
  public let watched: [Signal]
  private var watchers: [UnsafeMutablePointer<SignalWatcher>] = []
  /// The arrivals not yet taken; `Signal(0)` marks the stream closed.
  private let arrivals: Queue<Signal>

  init(loop: EventLoop, signals: [Signal]) throws(TinyAsyncError) {
    self.loop = loop
    watched = signals
    arrivals = Queue(capacity: 64, on: loop)
    for signal in Set(signals) {
      let record = UnsafeMutablePointer<SignalWatcher>.allocate(capacity: 1)
      record.initialize(to: SignalWatcher())
      record.pointee.stream = Unmanaged.passUnretained(self).toOpaque()
      let rc = cloop_signal_start(loop.cLoop, &record.pointee.watcher, signal.rawValue, signalArrived, record)
      if rc < 0 {
        record.deallocate()
        stopWatching()
        throw TinyAsyncError(code: rc)
      }
      watchers.append(record)
    }
  }

  deinit {
    stopWatching()
  }

  private func stopWatching() {
    for record in watchers {
      _ = cloop_signal_stop(&record.pointee.watcher)
      record.deallocate()
    }
    watchers.removeAll()
  }

  /// An arrival, from the C callback.
  fileprivate func arrived(_ signal: Signal, times: UInt32) {
    // A full buffer drops the arrival: the signal is already pending for
    // the next taker, as a pending signal coalesces in the kernel.
    for _ in 0..<times { if !arrivals.tryPut(signal) { break } }
  }

  /// Stops watching: the signals get their previous handling back (for
  /// `SIGTERM`, ending the process), and a task or fiber waiting in
  /// ``next()-80d2w`` gets `nil`, as does every later call. Closing again does
  /// nothing.
  public func close() {
    loop.checkThread("SignalStream.close()")
    guard !watchers.isEmpty else { return }
    stopWatching()
    _ = arrivals.tryPut(Signal(0))
  }

  /// `true` once ``close()`` was called.
  public var isClosed: Bool {
    loop.checkThread("SignalStream.isClosed")
    return watchers.isEmpty
  }

  /// The next arrival, waiting for one; `nil` once the stream is closed.
  ///
  /// - Throws: ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``
  ///   (an arrival is kept for the next call).
  public func next() async throws(TinyAsyncError) -> Signal? {
    loop.checkThread("SignalStream.next()")
    if watchers.isEmpty, arrivals.isEmpty { return nil }
    let signal = try await arrivals.get()
    return closedMark(signal)
  }

  /// The fiber form of ``next()``: parks the calling fiber until a signal
  /// arrives; `nil` once the stream is closed.
  @available(*, noasync, message: "in async code, use try await next() or for try await")
  public func next() throws(TinyAsyncError) -> Signal? {
    loop.checkThread("SignalStream.next()")
    if watchers.isEmpty, arrivals.isEmpty { return nil }
    let signal = try arrivals.get()
    return closedMark(signal)
  }

  /// nil for the closing mark, which stays for the next taker.
  private func closedMark(_ signal: Signal) -> Signal? {
    if signal.rawValue != 0 { return signal }
    _ = arrivals.tryPut(signal)
    return nil
  }
}

@available(*, unavailable, message: "a SignalStream belongs to its loop's thread")
extension SignalStream: Sendable {}

extension SignalStream: AsyncSequence {
  /// Each element is a signal that arrived.
  public typealias Element = Signal
  /// Iterating throws only ``TinyAsyncError``.
  public typealias Failure = TinyAsyncError

  /// The arrivals, one at a time, until the stream is closed.
  public func makeAsyncIterator() -> Iterator { Iterator(stream: self) }

  /// Arrivals until ``SignalStream/close()``.
  ///
  /// ```swift
  /// var arrivals = try loop.signals(.hangup).makeAsyncIterator()
  /// while let signal = try await arrivals.next() { print("reload on \(signal)") }
  /// ```
  public struct Iterator: AsyncIteratorProtocol {
    /// A signal.
    public typealias Element = Signal
    /// Only ``TinyAsyncError``.
    public typealias Failure = TinyAsyncError

    let stream: SignalStream

    /// The next arrival, or `nil` once the stream is closed.
    public mutating func next() async throws(TinyAsyncError) -> Signal? {
      try await stream.next()
    }
  }
}

@available(*, unavailable, message: "a SignalStream belongs to its loop's thread")
extension SignalStream.Iterator: Sendable {}

private let signalArrived: cloop_fn = { arg in
  let record = arg!.assumingMemoryBound(to: SignalWatcher.self)
  let stream = Unmanaged<SignalStream>.fromOpaque(record.pointee.stream!).takeUnretainedValue()
  let times = cloop_signal_take(&record.pointee.watcher)
  stream.arrived(Signal(record.pointee.watcher.signo), times: times)
}

extension EventLoop {
  /// Starts watching `signals` on this loop: their arrivals, as a
  /// ``SignalStream``. While the stream is open the signals do not end the
  /// process (their default action); they arrive here instead.
  ///
  /// - Throws: ``TinyAsyncError/system(errno:message:context:)`` with `EINVAL` for
  ///   `SIGKILL`, `SIGSTOP` or a fault signal (`SIGSEGV`, `SIGBUS`,
  ///   `SIGILL`, `SIGFPE`), which cannot be watched.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// let stops = try loop.signals(.terminate, .interrupt)
  /// loop.spawnFiber { if let signal = try stops.next() { print(signal) } }
  /// ```
  public func signals(_ signals: Signal...) throws(TinyAsyncError) -> SignalStream {
    checkThread("EventLoop.signals(_:)")
    return try SignalStream(loop: self, signals: signals)
  }
}
