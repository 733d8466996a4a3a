internal import CLoop

extension EventLoop {
  /// What the loop's backend runs, for logs and bug reports: `"epoll"`, or
  /// for io_uring the ring's set-up tier (`SINGLE_ISSUER|DEFER_TASKRUN` on
  /// Linux 6.1 and later), whether its fd is registered, whether I/O
  /// operations are io_uring's own, and whether socket receives are
  /// multishot into the loop's provided buffers (the C core's
  /// `cloop_loop_backend_info`). Loop thread only.
  ///
  /// ```swift
  /// let loop = try EventLoop()
  /// print(loop.backendInfo)
  /// // io_uring (SINGLE_ISSUER|DEFER_TASKRUN; registered ring fd; io_uring operations; ...)
  /// ```
  public var backendInfo: String {
    checkThread("EventLoop.backendInfo")
    return String(cString: cloop_loop_backend_info(cLoop))
  }
}
