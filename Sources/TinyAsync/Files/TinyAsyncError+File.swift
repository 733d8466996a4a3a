internal import CLoop

extension TinyAsyncError {
  /// The error for a file call's negative C result, with the path in the
  /// message of a system error (`No such file or directory: /etc/nope`).
  /// The case is the one ``init(code:)`` gives, so `catch` patterns and
  /// ``errno`` see the same error with or without a path; the named cases
  /// (``cancelled``, ``timedOut``, ``closed``, ...) keep their own words.
  static func file(code: Int32, path: String) -> TinyAsyncError {
    let error = TinyAsyncError(code: code)
    if case .system(let errno, let message) = error {
      return .system(errno: errno, message: "\(message): \(path)")
    }
    return error
  }
}
