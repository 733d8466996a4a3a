internal import CLoop

/// One accept on a listener through the C core's acceptor
/// (`cloop_accept_start`): a connection that left before it was taken is
/// skipped, and running out of descriptors is reported after a pause,
/// the same policy as the fibers' `cloop_sock_accept`. The acceptor is the
/// wait's own (the listener lends a spare one), so, as with a connect, an
/// interrupted wait throws at once; a connection that arrives as it is
/// interrupted is kept for the listener's next accept.
final class AcceptWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  let listener: TCPListener
  private let acceptor: UnsafeMutablePointer<cloop_acceptor>
  private var stopped = false

  init(listener: TCPListener) {
    self.listener = listener
    acceptor = listener.takeAcceptor()
    super.init(loop: listener.loop)
  }

  deinit {
    listener.giveBack(acceptor)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc = cloop_accept_start(loop.cLoop, acceptor, listener.fd, acceptWaitDone, retained.toOpaque())
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    stopped = true
    _ = cloop_accept_cancel(acceptor)
  }

  /// The C callback, through `acceptWaitDone`.
  fileprivate func done() {
    let result = acceptor.pointee.result
    if stopped {
      if result >= 0 { listener.keepAccepted(result) }
      return
    }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError(code: result)))
  }
}

private let acceptWaitDone: cloop_acceptor_fn = { acceptor in
  Unmanaged<AcceptWait>.fromOpaque(acceptor!.pointee.data).takeRetainedValue().done()
}
