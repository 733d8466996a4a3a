internal import CLoop

/// A bounded first-in-first-out queue between the tasks and fibers of one
/// loop (asyncio's `Queue(maxsize)`): ``put(_:)-5s6wf`` waits while it is full,
/// ``get()-8cy72`` while it is empty — backpressure for a producer that is
/// faster than its consumer.
///
/// Waiting putters and waiting getters are each served in the order they
/// began to wait, async tasks and fibers in one FIFO (see
/// `SyncWait.swift`); a put hands its element straight to the first waiting
/// getter. A waiter that is cancelled, or whose ``withTimeout(_:_:)``
/// expires, leaves the queue and throws, and nothing is lost: a cancelled
/// ``put(_:)-5s6wf`` put nothing, and an element handed to a getter in that very
/// moment goes to the next getter or back to the head of the queue. A
/// queue belongs to its loop's thread (it is not `Sendable`).
///
/// ```swift
/// try EventLoop.run {
///     let loop = EventLoop.current!
///     let lines = Queue<String>(capacity: 2)
///     let producer = loop.spawn {
///         for i in 0..<5 { try await lines.put("line \(i)") }  // waits when 2 are queued
///     }
///     for _ in 0..<5 { print(try await lines.get()) }  // line 0 ... line 4
///     try await producer.value
/// }
/// ```
public final class Queue<Element> {
  /// The loop it belongs to.
  public let loop: EventLoop
  /// How many elements it holds at most.
  public let capacity: Int
  /// The C queue (waiters link into it: it never moves).
  private let record = Pinned(cloop_queue())
  var cQueue: UnsafeMutablePointer<cloop_queue> { record.pointer }
  /// The C queue's ring, of indexes into `slots`.
  private let ring: Pinned<Int>
  /// The elements on their way through: the C queue carries `intptr_t`
  /// items, so an element waits here and its index travels (no box per
  /// element). It holds the queued elements and those of waiting putters.
  private var slots: [Element?] = []
  private var freeSlots: [Int] = []

  /// An empty queue of `loop` (default: the loop running on this thread)
  /// for at most `capacity` elements (`capacity > 0`).
  public init(capacity: Int, on loop: EventLoop? = nil) {
    ensure(capacity > 0, "Queue(capacity: \(capacity)): the capacity must be positive")
    self.loop = loop ?? EventLoop.running(for: "Queue()")
    self.loop.checkThread("Queue()")
    self.capacity = capacity
    ring = Pinned(0, count: capacity)
    let rc = cloop_queue_init(cQueue, ring.pointer, capacity)
    ensure(rc == 0, "cloop_queue_init: \(TinyAsyncError(code: rc))")
    slots.reserveCapacity(capacity)
  }

  deinit {
    ensure(
      cloop_waiting(&cQueue.pointee.getters) == 0 && cloop_waiting(&cQueue.pointee.putters) == 0,
      "a Queue went away while tasks wait on it")
  }

  /// The elements in the queue now. (An element just handed to a waiting
  /// fiber is no longer counted, though its slot stays taken until the
  /// fiber runs.)
  public var count: Int {
    loop.checkThread("Queue.count")
    return cloop_queue_size(cQueue)
  }

  /// `true` when ``count`` is 0.
  public var isEmpty: Bool { count == 0 }

  /// Appends `element`, waiting while the queue is full; if a getter
  /// waits, it gets the element at once.
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` if the task is cancelled while
  ///   it waits, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires; then `element` was not put.
  public func put(_ element: Element) async throws(TinyAsyncError) {
    loop.checkThread("Queue.put(_:)")
    let slot = store(element)
    if cloop_queue_try_put(cQueue, slot) == 0 { return }
    do {
      _ = try await SyncWait(loop: loop, .queuePut(cQueue, item: slot)).wait().get()
    } catch {
      discard(slot)
      throw error
    }
  }

  /// Removes and returns the oldest element, waiting while the queue is
  /// empty.
  ///
  /// - Throws: ``TinyAsyncError/cancelled`` if the task is cancelled while
  ///   it waits, ``TinyAsyncError/timedOut`` when an enclosing
  ///   ``withTimeout(_:_:)`` expires; then no element was taken.
  public func get() async throws(TinyAsyncError) -> Element {
    loop.checkThread("Queue.get()")
    var slot = 0
    if cloop_queue_try_get(cQueue, &slot) == 0 { return take(slot) }
    slot = try await SyncWait(loop: loop, .queueGet(cQueue)).wait().get()
    return take(slot)
  }

  /// The fiber form of ``put(_:)``: parks the calling fiber while the
  /// queue is full. Throws ``TinyAsyncError/cancelled`` if the fiber is
  /// (or was) cancelled, ``TinyAsyncError/timedOut`` in an expired
  /// ``withTimeout(_:_:)``; then `element` was not put. Outside a fiber it
  /// stops the program.
  @available(*, noasync, message: "in async code, use try await queue.put(_:)")
  public func put(_ element: Element) throws(TinyAsyncError) {
    loop.checkThread("Queue.put(_:)")
    let slot = store(element)
    let q = cQueue
    let rc = fiberSuspend("Queue.put(_:)") { cloop_queue_put(q, slot) }
    if rc < 0 {
      discard(slot)
      throw TinyAsyncError(code: rc)
    }
  }

  /// The fiber form of ``get()``: parks the calling fiber while the queue
  /// is empty. Throws ``TinyAsyncError/cancelled`` if the fiber is (or
  /// was) cancelled, ``TinyAsyncError/timedOut`` in an expired
  /// ``withTimeout(_:_:)``; then no element was taken. Outside a fiber it
  /// stops the program.
  @available(*, noasync, message: "in async code, use try await queue.get()")
  public func get() throws(TinyAsyncError) -> Element {
    loop.checkThread("Queue.get()")
    let q = cQueue
    var slot = 0
    try fiberCall("Queue.get()") { cloop_queue_get(q, &slot) }
    return take(slot)
  }

  /// Appends `element` if there is room now; returns `false` (dropping
  /// nothing of the queue's) if it is full.
  public func tryPut(_ element: Element) -> Bool {
    loop.checkThread("Queue.tryPut(_:)")
    let slot = store(element)
    if cloop_queue_try_put(cQueue, slot) == 0 { return true }
    discard(slot)
    return false
  }

  /// Removes and returns the oldest element, or `nil` if it is empty.
  public func tryGet() -> Element? {
    loop.checkThread("Queue.tryGet()")
    var slot = 0
    return cloop_queue_try_get(cQueue, &slot) == 0 ? take(slot) : nil
  }

  // MARK: Slots

  private func store(_ element: Element) -> Int {
    if let slot = freeSlots.popLast() {
      slots[slot] = element
      return slot
    }
    slots.append(element)
    return slots.count - 1
  }

  private func take(_ slot: Int) -> Element {
    let element = slots[slot].take()!
    freeSlots.append(slot)
    return element
  }

  private func discard(_ slot: Int) {
    slots[slot] = nil
    freeSlots.append(slot)
  }
}

@available(*, unavailable, message: "a Queue belongs to its loop's thread")
extension Queue: Sendable {}
