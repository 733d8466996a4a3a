internal import CLoop
internal import Glibc

/// What `File.stat()` says of a file (`statx`'s basic fields).
///
/// ```swift
/// let info = try await file.stat()
/// print(info.size, info.isRegularFile, info.permissions == 0o644)
/// ```
public struct FileInfo: Sendable, Hashable {
  /// Its size in bytes.
  public let size: Int
  /// The bytes the file system has allocated for it: less than ``size``
  /// for a file with holes.
  public let allocatedBytes: Int
  /// `st_mode`: the type bits and the permissions.
  public let mode: UInt32
  /// Hard links to it.
  public let linkCount: Int
  /// Its last modification, since the Unix epoch.
  public let modificationTime: Duration

  init(_ info: cloop_file_info) {
    size = Int(info.size)
    allocatedBytes = Int(info.blocks) * 512
    mode = info.mode
    linkCount = Int(info.nlink)
    modificationTime = .nanoseconds(info.mtime_ns)
  }

  /// The permission bits (`0o644`, ...).
  public var permissions: UInt32 { mode & 0o7777 }
  /// A regular file.
  public var isRegularFile: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
  /// A folder.
  public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
}
