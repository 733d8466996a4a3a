internal import Glibc

extension File {
  /// How `File.open(_:mode:permissions:)` opens a file: the `open(2)`
  /// flags (close-on-exec is always added).
  ///
  /// ```swift
  /// let log = try await File.open("/tmp/app.log", mode: .readWrite)
  /// let fresh = try await File.open("/tmp/out", mode: .write)       // created or truncated
  /// let once = try await File.open("/tmp/lock", mode: .createNew)   // EEXIST if it exists
  /// let raw = try await File.open("/tmp/x", mode: File.Mode(flags: O_WRONLY | O_CREAT))
  /// ```
  public struct Mode: Sendable, Hashable {
    /// The `O_*` flags passed to `open(2)`.
    public let flags: Int32

    /// Any `O_*` flags (`O_APPEND` is no use here: every write names its
    /// offset).
    public init(flags: Int32) {
      self.flags = flags
    }

    /// Reading only; the file must exist.
    public static let read = Mode(flags: O_RDONLY)
    /// Writing only; created if missing, emptied if not.
    public static let write = Mode(flags: O_WRONLY | O_CREAT | O_TRUNC)
    /// Reading and writing; created if missing, kept as it is if not.
    public static let readWrite = Mode(flags: O_RDWR | O_CREAT)
    /// Reading and writing a file that must not exist yet (`EEXIST`).
    public static let createNew = Mode(flags: O_RDWR | O_CREAT | O_EXCL)
  }
}
