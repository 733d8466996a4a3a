internal import CLoop
internal import Glibc

// SocketAddress to and from the kernel's form, for the calls that take an
// address (UDP's sends, connect, bind). Apart from SocketAddress.swift so
// the enum stays what both TCP and UDP read.

extension SocketAddress {
  /// A numeric IPv4 or IPv6 host (`"127.0.0.1"`, `"::1"`) and a port as
  /// an address; no name lookup, so it never waits.
  ///
  /// ```swift
  /// let server = try SocketAddress(host: "127.0.0.1", port: 5353)
  /// ```
  ///
  /// - Throws: `EINVAL` (``TinyAsyncError/system(errno:message:context:)``) for a
  ///   name, ``TinyAsyncError/invalidSetting(code:detail:context:)`` for a port
  ///   outside 0-65535; the context names the host.
  public init(host: String, port: Int) throws(TinyAsyncError) {
    let (storage, length) = try Self.parse(host, port)
    self.init(storage, length: length)!
  }

  /// `host` and `port` in the kernel's form, or the error naming them.
  private static func parse(_ host: String, _ port: Int) throws(TinyAsyncError) -> (sockaddr_storage, socklen_t) {
    try TinyAsyncError.checkPort(port, "address \(host)")
    var storage = sockaddr_storage()
    let length = cloop_sockaddr_parse(host, Int32(port), &storage)
    if length < 0 {
      throw TinyAsyncError(code: length, context: "address \"\(host)\" (a numeric IPv4 or IPv6 address, no name)")
    }
    return (storage, socklen_t(length))
  }

  /// The address as a `sockaddr_storage` and its length. A Unix path is
  /// `EAFNOSUPPORT` here: no call that takes this form needs one yet.
  func storage() throws(TinyAsyncError) -> (sockaddr_storage, socklen_t) {
    switch self {
    case .ipv4(let host, let port), .ipv6(let host, let port):
      return try Self.parse(host, port)
    case .unix(let path):
      throw TinyAsyncError(code: -EAFNOSUPPORT, context: "address unix:\(path) (UDP takes IPv4 or IPv6)")
    }
  }
}
