internal import CLoop

/// One task waiting until a ``FileDescriptorWatcher``'s descriptor is ready
/// in one direction, as a ``LoopWait``: ``start()`` starts the direction's C
/// watcher (`cloop_watch`), ``stop()`` stops it, and the watcher's callback
/// stops it too and finishes the wait. The C watcher is the
/// ``FileDescriptorWatcher``'s (one per direction; this object holds the
/// watcher, so it outlives the wait); while it is active its argument is
/// this object, retained, and the callback or ``stop()`` takes that
/// reference back.
final class DescriptorWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {
  private let watcher: FileDescriptorWatcher
  private let direction: FileDescriptorWatcher.Direction
  private let record: UnsafeMutablePointer<cloop_watcher>

  init(
    _ watcher: FileDescriptorWatcher, _ direction: FileDescriptorWatcher.Direction,
    record: UnsafeMutablePointer<cloop_watcher>
  ) {
    self.watcher = watcher
    self.direction = direction
    self.record = record
    super.init(loop: watcher.loop)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc = cloop_watch(
      loop.cLoop, record, watcher.fd, direction.cValue, descriptorReady, retained.toOpaque())
    if rc < 0 {  // -EBADF (closed underneath), -EEXIST, -ENOMEM
      retained.release()
      finish(.failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    if cloop_unwatch(loop.cLoop, record) != 0 {
      Unmanaged.passUnretained(self).release()
    }
  }

  /// The C callback, through `descriptorReady`: level-triggered, so stop
  /// watching before the task runs.
  fileprivate func ready() {
    _ = cloop_unwatch(loop.cLoop, record)
    finish(.success(()))
  }
}

private let descriptorReady: cloop_fn = { arg in
  Unmanaged<DescriptorWait>.fromOpaque(arg!).takeRetainedValue().ready()
}
