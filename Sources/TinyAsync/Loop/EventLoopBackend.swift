internal import CLoop

extension EventLoop {
  /// The kernel interface a loop polls with, chosen once when it is created.
  ///
  /// `.automatic` reads `$CLOOP_BACKEND` (`epoll` or `uring`) if set, else
  /// takes io_uring when it can be set up and epoll otherwise. Naming a
  /// backend that cannot run here makes `EventLoop.init` throw
  /// ``TinyAsyncError/backendUnavailable`` instead of falling back.
  ///
  /// ```swift
  /// let loop = try EventLoop(backend: .epoll)
  /// assert(loop.backend == .epoll)
  /// print("on \(loop.backend)")  // "on epoll"
  /// ```
  public enum Backend: Hashable, Sendable, CustomStringConvertible {
    /// The best backend that works here (see above).
    case automatic
    /// Readiness polling with `epoll`, woken through an `eventfd`.
    case epoll
    /// Completion-based I/O with `io_uring` (liburing).
    case ioUring

    /// `"automatic"`, `"epoll"` or `"io_uring"`.
    public var description: String {
      switch self {
      case .automatic: "automatic"
      case .epoll, .ioUring: String(cString: cloop_backend_name(cValue))
      }
    }

    var cValue: cloop_backend {
      switch self {
      case .automatic: CLOOP_BACKEND_AUTO
      case .epoll: CLOOP_BACKEND_EPOLL
      case .ioUring: CLOOP_BACKEND_URING
      }
    }

    init(_ backend: cloop_backend) {
      switch backend {
      case CLOOP_BACKEND_EPOLL: self = .epoll
      case CLOOP_BACKEND_URING: self = .ioUring
      default: misuse("cloop_loop_backend returned \(backend.rawValue), not epoll or io_uring")
      }
    }
  }
}
