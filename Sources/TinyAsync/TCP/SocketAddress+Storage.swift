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
  /// - Throws: `EINVAL` (``TinyAsyncError/system(errno:message:)``) for a
  ///   name or a port outside 0-65535.
  public init(host: String, port: Int) throws(TinyAsyncError) {
    guard (0...65535).contains(port) else { throw TinyAsyncError(code: -EINVAL) }
    var storage = sockaddr_storage()
    let length = cloop_sockaddr_parse(host, Int32(port), &storage)
    if length < 0 { throw TinyAsyncError(code: length) }
    self.init(storage, length: socklen_t(length))!
  }

  /// The address as a `sockaddr_storage` and its length. A Unix path is
  /// `EAFNOSUPPORT` here: no call that takes this form needs one yet.
  func storage() throws(TinyAsyncError) -> (sockaddr_storage, socklen_t) {
    switch self {
    case .ipv4(let host, let port), .ipv6(let host, let port):
      guard (0...65535).contains(port) else { throw TinyAsyncError(code: -EINVAL) }
      var storage = sockaddr_storage()
      let length = cloop_sockaddr_parse(host, Int32(port), &storage)
      if length < 0 { throw TinyAsyncError(code: length) }
      return (storage, socklen_t(length))
    case .unix:
      throw TinyAsyncError(code: -EAFNOSUPPORT)
    }
  }
}
