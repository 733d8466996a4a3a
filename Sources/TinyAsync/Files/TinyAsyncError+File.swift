internal import CLoop

extension TinyAsyncError {
  /// The error for a file call's negative C result, its context the
  /// operation and the path (`open /etc/nope: No such file or directory
  /// (errno 2)`). The kind is the one ``init(code:context:)`` gives, so
  /// `catch` patterns and ``errno`` see the same error with or without a
  /// path.
  static func file(code: Int32, path: String, _ operation: String) -> TinyAsyncError {
    TinyAsyncError(code: code, context: "\(operation) \(path)")
  }
}
