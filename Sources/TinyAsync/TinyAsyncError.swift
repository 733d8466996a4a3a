internal import CLoop
internal import Glibc

/// The one error type of TinyAsync: every failure the C core reports as a
/// negative code arrives here as a named case, with the system's message.
///
/// ```swift
/// do {
///     let loop = try EventLoop(backend: .ioUring)
///     print("running on \(loop.backend)")
/// } catch .backendUnavailable {
///     print("no io_uring here; use .automatic to fall back to epoll")
/// } catch {
///     print("could not create a loop: \(error)")
/// }
/// ```
public enum TinyAsyncError: Error, Hashable, Sendable, CustomStringConvertible {
  /// The backend asked for by name (e.g. `.ioUring`) cannot run here: not
  /// built in, refused by seccomp (`EPERM`), or unknown to the kernel.
  case backendUnavailable
  /// Memory ran out (`ENOMEM`), including `RLIMIT_MEMLOCK` for io_uring.
  case outOfMemory
  /// Any other system error: the positive `errno` and its message.
  case system(errno: Int32, message: String)
  /// A code of CLoop's own that this version of TinyAsync has no name for.
  case library(code: Int32, message: String)

  /// Maps a negative C result (`-errno` or a `CLOOP_E*` code) to its case.
  /// The one place where a C code becomes a Swift error.
  init(code: Int32) {
    precondition(code < 0, "TinyAsyncError(code:) needs a negative C result, got \(code)")
    switch code {
    case CLOOP_ENOBACKEND:
      self = .backendUnavailable
    case -ENOMEM:
      self = .outOfMemory
    case -4095 ... -1:  // Linux errno range (MAX_ERRNO is 4095)
      self = .system(errno: -code, message: Self.message(for: code))
    default:
      self = .library(code: code, message: Self.message(for: code))
    }
  }

  /// What went wrong, in the words of `cloop_strerror()`.
  public var message: String {
    switch self {
    case .backendUnavailable: Self.message(for: CLOOP_ENOBACKEND)
    case .outOfMemory: Self.message(for: -ENOMEM)
    case .system(_, let message), .library(_, let message): message
    }
  }

  public var description: String {
    switch self {
    case .backendUnavailable: "backend unavailable: \(message)"
    case .outOfMemory: "out of memory"
    case .system(let errno, let message): "\(message) (errno \(errno))"
    case .library(let code, let message): "\(message) (CLoop code \(code))"
    }
  }

  private static func message(for code: Int32) -> String {
    String(cString: cloop_strerror(code))
  }
}
