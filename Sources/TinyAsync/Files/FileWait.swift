internal import CLoop
internal import Glibc

/// One file operation of the async front as a ``LoopWait``: ``start()``
/// starts the C operation (`cloop_file_op_*`), ``stop()`` cancels it, and
/// its callback finishes the wait with the C result (`>= 0`, or the error
/// it maps to, with the path).
///
/// The `cloop_file_op` is this object's own (a file may have any number of
/// operations in flight), and so is the C copy of the path. While C holds
/// the op, its `data` is this object, retained; the callback takes that
/// reference back.
///
/// Stopping is synchronous on both paths: io_uring cancels in the kernel
/// before `cloop_file_op_cancel` returns, and the work pool's job reads
/// into a buffer of its own. So once an interrupted wait throws, C holds
/// no pointer to the op or to the caller's buffer, which the caller may
/// free at once. An open that had finished first is closed here, so an
/// interruption leaks no descriptor.
final class FileWait: LoopWait<Int32, TinyAsyncError>, @unchecked Sendable {
  enum Operation {
    case open(flags: Int32, permissions: UInt32)
    case close(fd: Int32)
    /// `buffer` stays valid until the wait returns (the caller's).
    case read(fd: Int32, UnsafeMutableRawPointer, count: Int, offset: UInt64)
    case write(fd: Int32, UnsafeRawPointer, count: Int, offset: UInt64)
    case fsync(fd: Int32, dataOnly: Bool)
    case stat(fd: Int32)

    /// What the operation does, for an error's context (`read /etc/hosts`).
    var verb: String {
      switch self {
      case .open: "open"
      case .close: "close"
      case .read: "read"
      case .write: "write"
      case .fsync: "sync"
      case .stat: "stat"
      }
    }
  }

  private let operation: Operation
  private let path: String
  private let cPath: UnsafeMutablePointer<CChar>
  private let record = Pinned(cloop_file_op())
  private var op: UnsafeMutablePointer<cloop_file_op> { record.pointer }
  private var stopping = false

  init(_ operation: Operation, path: String, loop: EventLoop) {
    self.operation = operation
    self.path = path
    cPath = strdup(path)!
    super.init(loop: loop)
  }

  deinit {
    free(cPath)
  }

  /// ``wait()`` for a stat: its answer.
  nonisolated(nonsending) func statWait() async throws(TinyAsyncError) -> cloop_file_info {
    _ = try await wait().get()
    return op.pointee.info
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let data = retained.toOpaque()
    let l = loop.cLoop
    let rc: Int32 =
      switch operation {
      case .open(let flags, let permissions):
        cloop_file_op_open(l, op, cPath, flags, permissions, fileWaitDone, data)
      case .close(let fd):
        cloop_file_op_close(l, op, fd, fileWaitDone, data)
      case .read(let fd, let buffer, let count, let offset):
        cloop_file_op_read(l, op, fd, buffer, count, offset, fileWaitDone, data)
      case .write(let fd, let buffer, let count, let offset):
        cloop_file_op_write(l, op, fd, buffer, count, offset, fileWaitDone, data)
      case .fsync(let fd, let dataOnly):
        cloop_file_op_fsync(l, op, fd, dataOnly ? 1 : 0, fileWaitDone, data)
      case .stat(let fd):
        cloop_file_op_stat(l, op, fd, nil, fileWaitDone, data)
      }
    if rc < 0 {
      retained.release()
      finish(.failure(TinyAsyncError.file(code: rc, path: path, operation.verb)))
    }
  }

  override func stop() {
    stopping = true
    _ = cloop_file_op_cancel(loop.cLoop, op)
    // Its callback is queued (-ECANCELED, or a result that came first):
    // run it now, so C is done with the op when the wait throws.
    if op.pointee.handle.link.next != nil {
      _ = cloop_handle_cancel(loop.cLoop, &op.pointee.handle)
      op.pointee.handle.fn(op.pointee.handle.arg)
    }
  }

  /// The C callback, through `fileWaitDone`.
  fileprivate func done() {
    let result = op.pointee.result
    if stopping {
      if case .open = operation, result >= 0 { Glibc.close(result) }
      return
    }
    finish(result >= 0 ? .success(result) : .failure(TinyAsyncError.file(code: result, path: path, operation.verb)))
  }
}

/// The one C callback of every ``FileWait``; `data` is the wait, retained.
private let fileWaitDone: cloop_file_fn = { op in
  Unmanaged<FileWait>.fromOpaque(op!.pointee.data).takeRetainedValue().done()
}
