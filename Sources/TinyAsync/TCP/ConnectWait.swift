internal import CLoop

/// A connect through the C core's connector (`cloop_connect_start`: the
/// name resolved off the loop's thread, each address tried in turn), the
/// same policy as the fibers' `cloop_tcp_connect`.
///
/// Stopping is not synchronous here, and need not be: the connector is this
/// wait's own, not a socket's, so nothing else waits to reuse it. An
/// interrupted wait throws at once; the C callback still comes later (the
/// wait stays retained until then) and closes a socket that connected too
/// late to be wanted.
final class ConnectWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  /// Where to: a host and port (TCP), or a Unix socket's path.
  enum Target {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// What the wait does, for an error's context: `connect to
    /// 127.0.0.1:9`, `connect to unix:/tmp/app.sock`.
    var context: String {
      switch self {
      case .tcp(let host, let port): "connect to \(TinyAsyncError.endpoint(host, port))"
      case .unix(let path): "connect to unix:\(path)"
      }
    }
  }

  private let record = Pinned(cloop_connector())
  private let target: Target
  private var stopped = false

  init(loop: EventLoop, _ target: Target) {
    self.target = target
    super.init(loop: loop)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let connector = record.pointer
    let rc =
      switch target {
      case .tcp(let host, let port):
        host.withCString {
          cloop_connect_start(loop.cLoop, connector, $0, Int32(port), connectWaitDone, retained.toOpaque())
        }
      case .unix(let path):
        path.withCString {
          cloop_connect_unix_start(loop.cLoop, connector, $0, connectWaitDone, retained.toOpaque())
        }
      }
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc, context: target.context)))
    }
  }

  /// A cancellation or timeout names the address too.
  override func failure(for error: TinyAsyncError) -> TinyAsyncError {
    error.with(context: target.context)
  }

  override func stop() {
    stopped = true
    _ = cloop_connect_cancel(record.pointer)
  }

  /// The C callback, through `connectWaitDone`.
  fileprivate func done() {
    let result = record.pointer.pointee.result
    if stopped {
      if result >= 0 { _ = cloop_close_fd(loop.cLoop, result) }
      return
    }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result, context: target.context)))
  }
}

private let connectWaitDone: cloop_connector_fn = { connector in
  Unmanaged<ConnectWait>.fromOpaque(connector!.pointee.data).takeRetainedValue().done()
}
