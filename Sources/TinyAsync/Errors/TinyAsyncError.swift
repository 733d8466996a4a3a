internal import CLoop
internal import Glibc

/// The one error type of TinyAsync: every failure the C core reports as a
/// negative code, and every interruption (cancellation, a timeout), arrives
/// as a named case, with the system's words for it (``message``) and what
/// was being done (``context``: the host and port, the path, the program),
/// so that its text says what failed:
/// `connection refused: connect to 127.0.0.1:9: Connection refused`.
///
/// ```swift
/// do {
///     let connection = try await TCPConnection.connect(host: "127.0.0.1", port: 9)
///     _ = connection
/// } catch .connectionRefused(let context) {
///     print("nobody listens there: \(context ?? "")")  // connect to 127.0.0.1:9
/// } catch {
///     print("connect failed: \(error)")
/// }
/// ```
///
/// Every case carries an optional `context` (last, defaulting to `nil`),
/// and a static member of the same name stands for the case without one,
/// so `throw .timedOut`, `catch .connectionRefused`,
/// `catch TinyAsyncError.cancelled`, `error == .cancelled` and an
/// exhaustive `switch error { case .timedOut: ... }` read as they would
/// without it. **Equality and hashing ignore the context**: the error of a
/// refused connect to any address equals ``connectionRefused``, and
/// ``system(errno:message:context:)`` errors are equal when their `errno`
/// and message are. A pattern that binds the associated values names the
/// context too: `case .system(let errno, _, _)` (or read ``errno``,
/// ``message``, ``detail`` and ``context``).
///
/// Why an enum with a context in each case, not a struct with a `kind` and
/// a `context` whose static members match through `~=`: with such a
/// struct, Swift 6.3's compiler crashes (signal 11 in
/// `MandatoryAllocBoxToStack`) on a common shape of code -- a
/// `catch .delimiterNotFound` that does not catch everything, inside a
/// loop, in a function that throws `any Error`; our own echo example is
/// one. Enum case patterns, as here, compile.
///
/// `indirect`: the payloads live in a box, so the error is one pointer.
/// Inline, the largest (a code, a message and a context) made it 48 bytes,
/// and every `async throws(TinyAsyncError)` frame reserves room for one:
/// that pushed a spawned task's first frames past the task's preallocated
/// slab, so each task allocated another (a million `spawn`s took 2,720 MiB
/// instead of 1,743, and twice the time). An error costs one allocation
/// when it is made, which the path that throws it can afford.
public indirect enum TinyAsyncError: Error, Hashable, Sendable, CustomStringConvertible {
  /// The operation was cancelled: the Swift task (or fiber) was cancelled
  /// while it waited, or a ``Future`` was cancelled (`ECANCELED`).
  case cancelled(context: String? = nil)
  /// A ``withTimeout(_:isolation:_:)`` scope's deadline passed while the
  /// operation waited (`ETIMEDOUT`), or a connection attempt timed out.
  case timedOut(context: String? = nil)
  /// Nobody listens at the address connected to (`ECONNREFUSED`).
  case connectionRefused(context: String? = nil)
  /// The peer reset the connection (`ECONNRESET`).
  case connectionReset(context: String? = nil)
  /// Writing to a connection the peer has closed (`EPIPE`).
  case brokenPipe(context: String? = nil)
  /// The address to listen on is taken (`EADDRINUSE`).
  case addressInUse(context: String? = nil)
  /// A host name resolves to no address (`CLOOP_ENOHOST`).
  case hostNotFound(context: String? = nil)
  /// The socket was closed while the operation waited on it (`EBADF`).
  case closed(context: String? = nil)
  /// ``TCPConnection/read(until:max:)-2z59d`` found no delimiter in
  /// `max` bytes (`CLOOP_ENODELIM`); those bytes stay buffered, not consumed.
  case delimiterNotFound(context: String? = nil)
  /// The backend asked for by name (e.g. `.ioUring`) cannot run here: not
  /// built in, refused by seccomp (`EPERM`), or unknown to the kernel.
  case backendUnavailable(context: String? = nil)
  /// Memory ran out (`ENOMEM`), including `RLIMIT_MEMLOCK` for io_uring.
  case outOfMemory(context: String? = nil)
  /// The main task of ``EventLoop/run(backend:_:)`` (or
  /// ``EventLoop/runUntilComplete(_:)``) waited for something nothing left
  /// on the loop could bring (`EDEADLK`, as the C core's `cloop_main`).
  case deadlocked(context: String? = nil)
  /// A setting or argument not accepted (`CLOOP_EBADENV`,
  /// `CLOOP_EBADOPTION`): `detail` names it, the value given and the values
  /// accepted, e.g. `CLOOP_BACKEND="URING": expected epoll, uring (or
  /// io_uring) or auto`, `port 70000 is out of range 0...65535`.
  case invalidSetting(code: Int32, detail: String, context: String? = nil)
  /// Any other system error: the positive `errno` and its message.
  case system(errno: Int32, message: String, context: String? = nil)
  /// A code of CLoop's own that this version of TinyAsync has no name for.
  case library(code: Int32, message: String, context: String? = nil)

  // MARK: The cases without a context, so that `.timedOut` is a value

  /// The operation was cancelled (`ECANCELED`), without a context.
  public static var cancelled: TinyAsyncError { .cancelled(context: nil) }
  /// A deadline passed (`ETIMEDOUT`), without a context.
  public static var timedOut: TinyAsyncError { .timedOut(context: nil) }
  /// Nobody listens there (`ECONNREFUSED`), without a context.
  public static var connectionRefused: TinyAsyncError { .connectionRefused(context: nil) }
  /// The peer reset the connection (`ECONNRESET`), without a context.
  public static var connectionReset: TinyAsyncError { .connectionReset(context: nil) }
  /// Writing to a closed peer (`EPIPE`), without a context.
  public static var brokenPipe: TinyAsyncError { .brokenPipe(context: nil) }
  /// The address to listen on is taken (`EADDRINUSE`), without a context.
  public static var addressInUse: TinyAsyncError { .addressInUse(context: nil) }
  /// A name with no address (`CLOOP_ENOHOST`), without a context.
  public static var hostNotFound: TinyAsyncError { .hostNotFound(context: nil) }
  /// Closed while the operation waited (`EBADF`), without a context.
  public static var closed: TinyAsyncError { .closed(context: nil) }
  /// No delimiter within `max` bytes (`CLOOP_ENODELIM`), without a context.
  public static var delimiterNotFound: TinyAsyncError { .delimiterNotFound(context: nil) }
  /// The backend asked for cannot run here, without a context.
  public static var backendUnavailable: TinyAsyncError { .backendUnavailable(context: nil) }
  /// Memory ran out (`ENOMEM`), without a context.
  public static var outOfMemory: TinyAsyncError { .outOfMemory(context: nil) }
  /// The main task waits for what nothing can bring (`EDEADLK`), without a context.
  public static var deadlocked: TinyAsyncError { .deadlocked(context: nil) }

  // MARK: Context

  /// What was being done, with its arguments -- `connect to 127.0.0.1:9`,
  /// `open /etc/nope`, `spawn /bin/nope` -- or `nil` where the call adds
  /// nothing the caller does not know (a cancelled wait, say).
  public var context: String? {
    switch self {
    case .cancelled(let context),
      .timedOut(let context),
      .connectionRefused(let context),
      .connectionReset(let context),
      .brokenPipe(let context),
      .addressInUse(let context),
      .hostNotFound(let context),
      .closed(let context),
      .delimiterNotFound(let context),
      .backendUnavailable(let context),
      .outOfMemory(let context),
      .deadlocked(let context),
      .invalidSetting(_, _, let context), .system(_, _, let context), .library(_, _, let context):
      context
    }
  }

  /// This error with `context` saying what was being done; an error that
  /// has a context already keeps it (the innermost call knows best).
  /// `context` is built only when it is used.
  ///
  /// ```swift
  /// throw TinyAsyncError.timedOut.with(context: "connect to \(host):\(port)")
  /// ```
  public func with(context: @autoclosure () -> String) -> TinyAsyncError {
    guard self.context == nil else { return self }
    let context = context()
    switch self {
    case .cancelled: return .cancelled(context: context)
    case .timedOut: return .timedOut(context: context)
    case .connectionRefused: return .connectionRefused(context: context)
    case .connectionReset: return .connectionReset(context: context)
    case .brokenPipe: return .brokenPipe(context: context)
    case .addressInUse: return .addressInUse(context: context)
    case .hostNotFound: return .hostNotFound(context: context)
    case .closed: return .closed(context: context)
    case .delimiterNotFound: return .delimiterNotFound(context: context)
    case .backendUnavailable: return .backendUnavailable(context: context)
    case .outOfMemory: return .outOfMemory(context: context)
    case .deadlocked: return .deadlocked(context: context)
    case .invalidSetting(let code, let detail, _): return .invalidSetting(code: code, detail: detail, context: context)
    case .system(let errno, let message, _): return .system(errno: errno, message: message, context: context)
    case .library(let code, let message, _): return .library(code: code, message: message, context: context)
    }
  }

  // MARK: Equality ignores the context

  /// The same case with the same values, whatever the ``context``.
  public static func == (lhs: TinyAsyncError, rhs: TinyAsyncError) -> Bool {
    switch (lhs, rhs) {
    case (.invalidSetting(let a, let x, _), .invalidSetting(let b, let y, _)): a == b && x == y
    case (.system(let a, let x, _), .system(let b, let y, _)): a == b && x == y
    case (.library(let a, let x, _), .library(let b, let y, _)): a == b && x == y
    case (.invalidSetting, _), (.system, _), (.library, _): false
    default: lhs.code == rhs.code
    }
  }

  /// Hashes what ``==(_:_:)`` compares: never the ``context``.
  public func hash(into hasher: inout Hasher) {
    hasher.combine(code)
    switch self {
    case .invalidSetting(_, let detail, _): hasher.combine(detail)
    case .system(_, let message, _), .library(_, let message, _): hasher.combine(message)
    default: break
    }
  }

  // MARK: C codes

  /// Maps a negative C result (`-errno` or a `CLOOP_E*` code) to its case,
  /// done while `context`. The one place where a C code becomes a Swift
  /// error.
  init(code: Int32, context: String? = nil) {
    ensure(code < 0, "TinyAsyncError(code:) needs a negative C result, got \(code)")
    switch code {
    case -ECANCELED: self = .cancelled(context: context)
    case -ETIMEDOUT: self = .timedOut(context: context)
    case -ECONNREFUSED: self = .connectionRefused(context: context)
    case -ECONNRESET: self = .connectionReset(context: context)
    case -EPIPE: self = .brokenPipe(context: context)
    case -EADDRINUSE: self = .addressInUse(context: context)
    case CLOOP_ENOHOST: self = .hostNotFound(context: context)
    case -EBADF: self = .closed(context: context)
    case CLOOP_ENODELIM: self = .delimiterNotFound(context: context)
    case CLOOP_ENOBACKEND: self = .backendUnavailable(context: context)
    case -ENOMEM: self = .outOfMemory(context: context)
    case -EDEADLK: self = .deadlocked(context: context)
    case CLOOP_EBADENV, CLOOP_EBADOPTION:
      self = .invalidSetting(code: code, detail: String(cString: cloop_error_detail()), context: context)
    case -4095 ... -1:  // Linux errno range (MAX_ERRNO is 4095)
      self = .system(errno: -code, message: Self.message(for: code), context: context)
    default:
      self = .library(code: code, message: Self.message(for: code), context: context)
    }
  }

  /// The negative C code this error stands for (for the C core's futures).
  var code: Int32 {
    switch self {
    case .cancelled: -ECANCELED
    case .timedOut: -ETIMEDOUT
    case .connectionRefused: -ECONNREFUSED
    case .connectionReset: -ECONNRESET
    case .brokenPipe: -EPIPE
    case .addressInUse: -EADDRINUSE
    case .hostNotFound: CLOOP_ENOHOST
    case .closed: -EBADF
    case .delimiterNotFound: CLOOP_ENODELIM
    case .backendUnavailable: CLOOP_ENOBACKEND
    case .outOfMemory: -ENOMEM
    case .deadlocked: -EDEADLK
    case .invalidSetting(let code, _, _): code
    case .system(let errno, _, _): -errno
    case .library(let code, _, _): code
    }
  }

  // MARK: What the associated values say

  /// The system's `errno` for this error, or `nil` for CLoop's own codes.
  public var errno: Int32? {
    let code = self.code
    return (-4095 ... -1).contains(code) ? -code : nil
  }

  /// For ``invalidSetting(code:detail:context:)``, what was not accepted
  /// (the setting, the value given, the values accepted); `nil` for any
  /// other case.
  public var detail: String? {
    if case .invalidSetting(_, let detail, _) = self { return detail }
    return nil
  }

  /// What went wrong, in the words of `strerror` / `cloop_strerror()` (or
  /// the ``detail`` of an invalid setting), without the ``context``.
  public var message: String {
    switch self {
    case .system(_, let message, _), .library(_, let message, _): message
    case .invalidSetting(_, let detail, _) where !detail.isEmpty: detail
    case .hostNotFound: "host not found"
    case .delimiterNotFound: "no delimiter within the maximum length"
    case .closed: "socket closed"
    case .deadlocked:
      "the main task waits for something nothing left on the loop can bring (no ready job, timer, socket, process, work-pool job, reference, other task or thread-safe handle)"
    default: Self.message(for: code)
    }
  }

  /// The case, the context and the system's message, e.g.
  /// `connection refused: connect to 127.0.0.1:9: Connection refused`,
  /// `open /etc/nope: No such file or directory (errno 2)`,
  /// `host not found: connect to nope.invalid:80`.
  public var description: String {
    let context = self.context.map { "\($0): " } ?? ""
    switch self {
    case .system(let errno, let message, _): return "\(context)\(message) (errno \(errno))"
    case .library(let code, let message, _): return "\(context)\(message) (CLoop code \(code))"
    case .hostNotFound(let context):  // the message would only repeat the case
      return context.map { "host not found: \($0)" } ?? "host not found"
    default: return "\(caseName): \(context)\(message)"
    }
  }

  private var caseName: String {
    switch self {
    case .cancelled: "cancelled"
    case .timedOut: "timed out"
    case .connectionRefused: "connection refused"
    case .connectionReset: "connection reset"
    case .brokenPipe: "broken pipe"
    case .addressInUse: "address in use"
    case .hostNotFound: "host not found"
    case .closed: "closed"
    case .delimiterNotFound: "delimiter not found"
    case .backendUnavailable: "backend unavailable"
    case .outOfMemory: "out of memory"
    case .deadlocked: "deadlocked"
    case .invalidSetting: "invalid setting"
    case .system: "system"
    case .library: "library"
    }
  }

  private static func message(for code: Int32) -> String {
    String(cString: cloop_strerror(code))
  }

  /// Throws the error for a negative C result; returns non-negative ones.
  @inline(__always)
  static func check(_ rc: Int32) throws(TinyAsyncError) -> Int32 {
    if rc < 0 { throw TinyAsyncError(code: rc) }
    return rc
  }

  /// Throws the error for a negative C result, saying what was being done
  /// (built only on failure); returns non-negative ones.
  @inline(__always)
  static func check(_ rc: Int32, _ context: @autoclosure () -> String) throws(TinyAsyncError) -> Int32 {
    if rc < 0 { throw TinyAsyncError(code: rc, context: context()) }
    return rc
  }

  // MARK: Context helpers

  /// `host:port`, with an IPv6 address in brackets (`[::1]:8080`).
  static func endpoint(_ host: String, _ port: Int) -> String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
  }

  /// Throws ``invalidSetting(code:detail:context:)`` naming `port` unless
  /// it is a TCP/UDP port, 0...65535 (0 picks one where binding).
  static func checkPort(_ port: Int, _ context: @autoclosure () -> String) throws(TinyAsyncError) {
    guard !(0...65535).contains(port) else { return }
    throw .invalidSetting(
      code: CLOOP_EBADOPTION, detail: "port \(port) is out of range 0...65535", context: context())
  }
}
