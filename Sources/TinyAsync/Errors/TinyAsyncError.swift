internal import CLoop
internal import Glibc

/// The one error type of TinyAsync: every failure the C core reports as a
/// negative code, and every interruption (cancellation, a timeout), arrives
/// as a named case; ``message`` is the system's words for it.
///
/// ```swift
/// do {
///     let connection = try await TCPConnection.connect(host: "127.0.0.1", port: 9)
///     _ = connection
/// } catch .connectionRefused {
///     print("nobody listens there")
/// } catch {
///     print("connect failed: \(error)")
/// }
/// ```
public enum TinyAsyncError: Error, Hashable, Sendable, CustomStringConvertible {
  /// The operation was cancelled: the Swift task (or fiber) was cancelled
  /// while it waited, or a ``Future`` was cancelled (`ECANCELED`).
  case cancelled
  /// A ``withTimeout(_:_:)`` scope's deadline passed while the operation
  /// waited (`ETIMEDOUT`), or a connection attempt timed out.
  case timedOut
  /// Nobody listens at the address connected to (`ECONNREFUSED`).
  case connectionRefused
  /// The peer reset the connection (`ECONNRESET`).
  case connectionReset
  /// Writing to a connection the peer has closed (`EPIPE`).
  case brokenPipe
  /// The address to listen on is taken (`EADDRINUSE`).
  case addressInUse
  /// A host name resolves to no address (`CLOOP_ENOHOST`).
  case hostNotFound
  /// The socket was closed while the operation waited on it (`EBADF`).
  case closed
  /// ``TCPConnection/read(until:max:)-2z59d`` found no delimiter in
  /// `max` bytes (`CLOOP_ENODELIM`); those bytes stay buffered, not consumed.
  case delimiterNotFound
  /// The backend asked for by name (e.g. `.ioUring`) cannot run here: not
  /// built in, refused by seccomp (`EPERM`), or unknown to the kernel.
  case backendUnavailable
  /// Memory ran out (`ENOMEM`), including `RLIMIT_MEMLOCK` for io_uring.
  case outOfMemory
  /// The main task of ``EventLoop/run(backend:_:)`` (or
  /// ``EventLoop/runUntilComplete(_:)``) waited for something nothing left
  /// on the loop could bring (`EDEADLK`, as the C core's `cloop_main`).
  case deadlocked
  /// A setting the C core does not accept (`CLOOP_EBADENV`,
  /// `CLOOP_EBADOPTION`): `detail` names it, the value given and the values
  /// accepted, e.g. `CLOOP_BACKEND="URING": expected epoll, uring (or
  /// io_uring) or auto`.
  case invalidSetting(code: Int32, detail: String)
  /// Any other system error: the positive `errno` and its message.
  case system(errno: Int32, message: String)
  /// A code of CLoop's own that this version of TinyAsync has no name for.
  case library(code: Int32, message: String)

  /// Maps a negative C result (`-errno` or a `CLOOP_E*` code) to its case.
  /// The one place where a C code becomes a Swift error.
  init(code: Int32) {
    ensure(code < 0, "TinyAsyncError(code:) needs a negative C result, got \(code)")
    switch code {
    case -ECANCELED: self = .cancelled
    case -ETIMEDOUT: self = .timedOut
    case -ECONNREFUSED: self = .connectionRefused
    case -ECONNRESET: self = .connectionReset
    case -EPIPE: self = .brokenPipe
    case -EADDRINUSE: self = .addressInUse
    case CLOOP_ENOHOST: self = .hostNotFound
    case -EBADF: self = .closed
    case CLOOP_ENODELIM: self = .delimiterNotFound
    case CLOOP_ENOBACKEND: self = .backendUnavailable
    case -ENOMEM: self = .outOfMemory
    case -EDEADLK: self = .deadlocked
    case CLOOP_EBADENV, CLOOP_EBADOPTION:
      self = .invalidSetting(code: code, detail: String(cString: cloop_error_detail()))
    case -4095 ... -1:  // Linux errno range (MAX_ERRNO is 4095)
      self = .system(errno: -code, message: Self.message(for: code))
    default:
      self = .library(code: code, message: Self.message(for: code))
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
    case .invalidSetting(let code, _): code
    case .system(let errno, _): -errno
    case .library(let code, _): code
    }
  }

  /// The system's `errno` for this error, or `nil` for CLoop's own codes.
  public var errno: Int32? {
    let code = self.code
    return (-4095 ... -1).contains(code) ? -code : nil
  }

  /// What went wrong, in the words of `strerror` / `cloop_strerror()`.
  public var message: String {
    switch self {
    case .system(_, let message), .library(_, let message): message
    case .invalidSetting(_, let detail) where !detail.isEmpty: detail
    case .hostNotFound: "host not found"
    case .delimiterNotFound: "no delimiter within the maximum length"
    case .closed: "socket closed"
    case .deadlocked:
      "the main task waits for something nothing left on the loop can bring (no ready job, timer, socket, process, work-pool job, reference, other task or thread-safe handle)"
    default: Self.message(for: code)
    }
  }

  /// The case and the system's message, e.g. `timedOut: Connection timed out`.
  public var description: String {
    switch self {
    case .system(let errno, let message): "\(message) (errno \(errno))"
    case .library(let code, let message): "\(message) (CLoop code \(code))"
    case .backendUnavailable: "backend unavailable: \(message)"
    default: "\(caseName): \(message)"
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
}
