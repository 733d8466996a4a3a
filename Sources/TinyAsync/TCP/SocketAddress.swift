internal import Glibc

/// The address of one end of a connection: IPv4 or IPv6 with a port, or a
/// Unix domain socket's path.
///
/// ```swift
/// let peer = try connection.remoteAddress
/// if case .ipv4(let host, let port) = peer { print("\(host):\(port)") }
/// print(peer)  // 127.0.0.1:54321, [::1]:8080, or unix:/tmp/app.sock
/// ```
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
  /// A numeric IPv4 address (`"127.0.0.1"`) and a port.
  case ipv4(String, port: Int)
  /// A numeric IPv6 address (`"::1"`) and a port.
  case ipv6(String, port: Int)
  /// A Unix domain socket's path, `"@name"` for an abstract name, or `""`
  /// for an unnamed socket (a client's end, usually).
  case unix(String)

  /// `host:port`, `[v6]:port`, or `unix:path`.
  public var description: String {
    switch self {
    case .ipv4(let host, let port): "\(host):\(port)"
    case .ipv6(let host, let port): "[\(host)]:\(port)"
    case .unix(let path): "unix:\(path)"
    }
  }

  /// The port, or `nil` for a Unix socket.
  public var port: Int? {
    switch self {
    case .ipv4(_, let port), .ipv6(_, let port): port
    case .unix: nil
    }
  }

  /// The address in `storage` (`length` bytes of it, as the kernel wrote).
  init?(_ storage: sockaddr_storage, length: socklen_t) {
    var storage = storage
    let family = Int32(storage.ss_family)
    let parsed: SocketAddress? = withUnsafeBytes(of: &storage) { raw in
      switch family {
      case AF_INET:
        var sin = raw.load(as: sockaddr_in.self)
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &sin.sin_addr, &text, socklen_t(text.count)) != nil else { return nil }
        return .ipv4(text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, port: Int(UInt16(bigEndian: sin.sin_port)))
      case AF_INET6:
        var sin6 = raw.load(as: sockaddr_in6.self)
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &sin6.sin6_addr, &text, socklen_t(text.count)) != nil else { return nil }
        return .ipv6(text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, port: Int(UInt16(bigEndian: sin6.sin6_port)))
      case AF_UNIX:
        let pathOffset = MemoryLayout<sa_family_t>.size
        let count = max(0, Int(length) - pathOffset)
        let bytes = raw[pathOffset..<pathOffset + min(count, raw.count - pathOffset)]
        if bytes.first == 0, bytes.count > 1 {  // abstract: a NUL, then the name
          return .unix("@" + String(decoding: bytes.dropFirst(), as: UTF8.self))
        }
        return .unix(String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
      default:
        return nil
      }
    }
    guard let parsed else { return nil }
    self = parsed
  }
}

/// The process, user and group at the other end of a Unix domain socket
/// (`SO_PEERCRED`): who connected, or who listened.
///
/// ```swift
/// let peer = try connection.peerCredentials
/// guard peer.uid == getuid() else { connection.close(); return }
/// ```
public struct PeerCredentials: Hashable, Sendable {
  /// The peer's process id.
  public let pid: Int32
  /// Its user id.
  public let uid: UInt32
  /// Its group id.
  public let gid: UInt32
}
