internal import CLoop
internal import Glibc

/// TCP keep-alive probing (`SO_KEEPALIVE` with `TCP_KEEPIDLE`,
/// `TCP_KEEPINTVL`, `TCP_KEEPCNT`): after `idle` without traffic the kernel
/// sends a probe every `interval`, and after `count` unanswered probes it
/// drops the connection, whose next read or write then fails
/// (`ETIMEDOUT`). The kernel counts in whole seconds.
///
/// ```swift
/// try connection.setKeepAlive(TCPKeepAlive(idle: .seconds(60), interval: .seconds(10), count: 5))
/// // a dead peer is noticed within 60 + 5 × 10 s
/// ```
public struct TCPKeepAlive: Hashable, Sendable {
  /// Time without traffic before the first probe: whole seconds, 1 to 32,767.
  public var idle: Duration
  /// Time between probes: whole seconds, 1 to 32,767.
  public var interval: Duration
  /// Unanswered probes before the connection is dropped: 1 to 127.
  public var count: Int

  /// Keep-alive after `idle`, probing every `interval`, giving up after `count` probes.
  public init(idle: Duration, interval: Duration, count: Int) {
    self.idle = idle
    self.interval = interval
    self.count = count
  }
}

/// The socket options of ``TCPConnection`` and ``TCPListener``, over a
/// descriptor: `setsockopt`/`getsockopt` with the caller's name for the
/// operation in every error. A few syscalls each; none touches the loop.
enum SocketOptions {
  /// Linux's limits for the keep-alive values (MAX_TCP_KEEPIDLE, ...).
  private static let maxKeepSeconds: Int64 = 32767
  private static let maxKeepCount = 127

  static func setFlag(_ fd: Int32, _ level: Int32, _ name: Int32, _ label: String, _ on: Bool, _ operation: String) throws(TinyAsyncError) {
    try set(fd, level, name, label, on ? 1 : 0, operation)
  }

  static func flag(_ fd: Int32, _ level: Int32, _ name: Int32, _ label: String, _ operation: String) throws(TinyAsyncError) -> Bool {
    try get(fd, level, name, label, operation) != 0
  }

  static func setBufferSize(_ fd: Int32, _ name: Int32, _ label: String, _ bytes: Int, _ operation: String) throws(TinyAsyncError) {
    guard bytes > 0, bytes <= Int(Int32.max) else {
      throw invalid("\(operation): \(label) must be 1 to \(Int32.max) bytes, got \(bytes)")
    }
    try set(fd, SOL_SOCKET, name, label, Int32(bytes), operation)
  }

  static func setKeepAlive(_ fd: Int32, _ keepAlive: TCPKeepAlive?, _ operation: String) throws(TinyAsyncError) {
    guard let keepAlive else {
      try set(fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 0, operation)
      return
    }
    let idle = try seconds(keepAlive.idle, "idle", operation)
    let interval = try seconds(keepAlive.interval, "interval", operation)
    guard (1...maxKeepCount).contains(keepAlive.count) else {
      throw invalid("\(operation): count must be 1 to \(maxKeepCount) probes, got \(keepAlive.count)")
    }
    // The timings first: keep-alive is never on with values not asked for.
    try set(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, "TCP_KEEPIDLE", idle, operation)
    try set(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, "TCP_KEEPINTVL", interval, operation)
    try set(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, "TCP_KEEPCNT", Int32(keepAlive.count), operation)
    try set(fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 1, operation)
  }

  static func keepAlive(_ fd: Int32, _ operation: String) throws(TinyAsyncError) -> TCPKeepAlive? {
    guard try get(fd, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", operation) != 0 else { return nil }
    return TCPKeepAlive(
      idle: .seconds(try get(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, "TCP_KEEPIDLE", operation)),
      interval: .seconds(try get(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, "TCP_KEEPINTVL", operation)),
      count: Int(try get(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, "TCP_KEEPCNT", operation)))
  }

  static func get(_ fd: Int32, _ level: Int32, _ name: Int32, _ label: String, _ operation: String) throws(TinyAsyncError) -> Int32 {
    guard fd >= 0 else { throw .closed }
    var value: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    if getsockopt(fd, level, name, &value, &length) < 0 { throw failed(label, operation) }
    return value
  }

  private static func set(_ fd: Int32, _ level: Int32, _ name: Int32, _ label: String, _ value: Int32, _ operation: String) throws(TinyAsyncError) {
    guard fd >= 0 else { throw .closed }
    var value = value
    if setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) < 0 { throw failed(label, operation) }
  }

  /// Whole seconds in the kernel's range, or the error naming `field`.
  private static func seconds(_ duration: Duration, _ field: String, _ operation: String) throws(TinyAsyncError) -> Int32 {
    let (whole, fraction) = duration.components
    guard fraction == 0, (1...maxKeepSeconds).contains(whole) else {
      throw invalid("\(operation): \(field) must be whole seconds from 1 to \(maxKeepSeconds), got \(duration)")
    }
    return Int32(whole)
  }

  private static func invalid(_ detail: String) -> TinyAsyncError {
    .invalidSetting(code: CLOOP_EBADOPTION, detail: detail)
  }

  /// The system's error for a failed call, its context naming the option.
  private static func failed(_ label: String, _ operation: String) -> TinyAsyncError {
    let code = errno
    if code == EBADF { return .closed }
    return .system(errno: code, message: String(cString: strerror(code)), context: "\(operation): \(label)")
  }
}

extension TCPConnection {
  /// Whether Nagle's algorithm is off (`TCP_NODELAY`), so small writes go
  /// out at once instead of waiting to be merged. On by default: the loop
  /// sets it on every connection it makes or accepts, as asyncio does.
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``; a system error
  ///   naming `TCP_NODELAY` on a socket without it (a Unix socket).
  public var noDelay: Bool {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.noDelay")
      return try SocketOptions.flag(fd, Int32(IPPROTO_TCP), TCP_NODELAY, "TCP_NODELAY", "TCPConnection.noDelay")
    }
  }

  /// Turns Nagle's algorithm off (`true`, the default) or on (`false`: the
  /// kernel merges small writes, for bulk senders of many small pieces).
  ///
  /// ```swift
  /// try connection.setNoDelay(false)
  /// ```
  /// - Throws: ``TinyAsyncError/closed``; a system error naming `TCP_NODELAY`.
  public func setNoDelay(_ enabled: Bool) throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.setNoDelay")
    try SocketOptions.setFlag(fd, Int32(IPPROTO_TCP), TCP_NODELAY, "TCP_NODELAY", enabled, "TCPConnection.setNoDelay")
  }

  /// The keep-alive probing in force, or `nil` when it is off (the default).
  /// - Throws: ``TinyAsyncError/closed``; a system error naming the option.
  public var keepAlive: TCPKeepAlive? {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.keepAlive")
      return try SocketOptions.keepAlive(fd, "TCPConnection.keepAlive")
    }
  }

  /// Turns keep-alive probing on with `keepAlive`'s timings, or off with `nil`.
  /// - Throws: ``TinyAsyncError/invalidSetting(code:detail:context:)`` naming the
  ///   field out of range (a non-whole or out-of-range number of seconds, a
  ///   count over 127); ``TinyAsyncError/closed``; a system error naming
  ///   the option the kernel refused.
  public func setKeepAlive(_ keepAlive: TCPKeepAlive?) throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.setKeepAlive")
    try SocketOptions.setKeepAlive(fd, keepAlive, "TCPConnection.setKeepAlive")
  }

  /// The kernel's send buffer (`SO_SNDBUF`), in bytes: twice what was set
  /// (Linux keeps the other half for its bookkeeping), within
  /// `net.core.wmem_max`; grown by the kernel on its own until set.
  /// - Throws: ``TinyAsyncError/closed``.
  public var sendBufferSize: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.sendBufferSize")
      return Int(try SocketOptions.get(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", "TCPConnection.sendBufferSize"))
    }
  }

  /// Fixes the send buffer at `bytes` (`SO_SNDBUF`; the kernel stops tuning it).
  /// - Throws: ``TinyAsyncError/invalidSetting(code:detail:context:)`` for a size
  ///   under 1 or over `Int32.max`; ``TinyAsyncError/closed``.
  public func setSendBufferSize(_ bytes: Int) throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.setSendBufferSize")
    try SocketOptions.setBufferSize(fd, SO_SNDBUF, "SO_SNDBUF", bytes, "TCPConnection.setSendBufferSize")
  }

  /// The kernel's receive buffer (`SO_RCVBUF`), in bytes: twice what was
  /// set, within `net.core.rmem_max`; grown by the kernel on its own until set.
  /// - Throws: ``TinyAsyncError/closed``.
  public var receiveBufferSize: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPConnection.receiveBufferSize")
      return Int(try SocketOptions.get(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", "TCPConnection.receiveBufferSize"))
    }
  }

  /// Fixes the receive buffer at `bytes` (`SO_RCVBUF`). The window it
  /// allows is agreed when the connection opens: for a large one, set it
  /// on the ``TCPListener`` (accepted connections inherit it).
  /// - Throws: ``TinyAsyncError/invalidSetting(code:detail:context:)`` for a size
  ///   under 1 or over `Int32.max`; ``TinyAsyncError/closed``.
  public func setReceiveBufferSize(_ bytes: Int) throws(TinyAsyncError) {
    loop.checkThread("TCPConnection.setReceiveBufferSize")
    try SocketOptions.setBufferSize(fd, SO_RCVBUF, "SO_RCVBUF", bytes, "TCPConnection.setReceiveBufferSize")
  }
}

/// On a listener the options are the accepted connections' defaults:
/// Linux copies keep-alive and the buffer sizes from the listening socket to
/// each connection it accepts. (There is no `noDelay` here: the loop sets
/// `TCP_NODELAY` on every accepted connection itself.)
extension TCPListener {
  /// The keep-alive probing accepted connections start with, or `nil` (off).
  /// - Throws: ``TinyAsyncError/closed`` after ``close()``.
  public var keepAlive: TCPKeepAlive? {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPListener.keepAlive")
      return try SocketOptions.keepAlive(fd, "TCPListener.keepAlive")
    }
  }

  /// Sets the keep-alive probing of the connections accepted from now on.
  ///
  /// ```swift
  /// let listener = try TCPListener(host: "0.0.0.0", port: 8080)
  /// try listener.setKeepAlive(TCPKeepAlive(idle: .seconds(60), interval: .seconds(10), count: 5))
  /// ```
  /// - Throws: as ``TCPConnection/setKeepAlive(_:)``.
  public func setKeepAlive(_ keepAlive: TCPKeepAlive?) throws(TinyAsyncError) {
    loop.checkThread("TCPListener.setKeepAlive")
    try SocketOptions.setKeepAlive(fd, keepAlive, "TCPListener.setKeepAlive")
  }

  /// The send buffer accepted connections start with (`SO_SNDBUF`), in bytes.
  /// - Throws: ``TinyAsyncError/closed``.
  public var sendBufferSize: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPListener.sendBufferSize")
      return Int(try SocketOptions.get(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", "TCPListener.sendBufferSize"))
    }
  }

  /// Sets the send buffer of the connections accepted from now on.
  /// - Throws: as ``TCPConnection/setSendBufferSize(_:)``.
  public func setSendBufferSize(_ bytes: Int) throws(TinyAsyncError) {
    loop.checkThread("TCPListener.setSendBufferSize")
    try SocketOptions.setBufferSize(fd, SO_SNDBUF, "SO_SNDBUF", bytes, "TCPListener.setSendBufferSize")
  }

  /// The receive buffer accepted connections start with (`SO_RCVBUF`), in bytes.
  /// - Throws: ``TinyAsyncError/closed``.
  public var receiveBufferSize: Int {
    get throws(TinyAsyncError) {
      loop.checkThread("TCPListener.receiveBufferSize")
      return Int(try SocketOptions.get(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", "TCPListener.receiveBufferSize"))
    }
  }

  /// Sets the receive buffer of the connections accepted from now on (and
  /// so the window they offer when they open).
  /// - Throws: as ``TCPConnection/setReceiveBufferSize(_:)``.
  public func setReceiveBufferSize(_ bytes: Int) throws(TinyAsyncError) {
    loop.checkThread("TCPListener.setReceiveBufferSize")
    try SocketOptions.setBufferSize(fd, SO_RCVBUF, "SO_RCVBUF", bytes, "TCPListener.setReceiveBufferSize")
  }
}
