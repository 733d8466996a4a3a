import CLoop
import Glibc
import Testing

@Suite("cloop_call_threadsafe")
struct ThreadSafeTests {
  /// What the loop thread counts.
  final class Tally {
    var delivered = 0
    var outOfOrder = 0
    var lastIndex: [Int]
    let loop: OpaquePointer
    let expected: Int
    init(loop: OpaquePointer, threads: Int, expected: Int) {
      self.loop = loop
      self.expected = expected
      lastIndex = Array(repeating: -1, count: threads)
    }
  }

  /// One call: its handle (the handle's arg is the slot) and what it saw.
  struct Slot {
    var handle = cloop_handle()
    var thread = 0
    var index = 0
    var deliveries = 0
    var tally: Unmanaged<Tally>?
  }

  static func handle(of slot: UnsafeMutablePointer<Slot>) -> UnsafeMutablePointer<cloop_handle> {
    (UnsafeMutableRawPointer(slot) + MemoryLayout<Slot>.offset(of: \.handle)!)
      .assumingMemoryBound(to: cloop_handle.self)
  }

  static let delivered: cloop_fn = { arg in
    let slot = arg!.assumingMemoryBound(to: Slot.self)
    let tally = slot.pointee.tally!.takeUnretainedValue()
    slot.pointee.deliveries += 1
    let thread = slot.pointee.thread
    if slot.pointee.index <= tally.lastIndex[thread] { tally.outOfOrder += 1 }
    tally.lastIndex[thread] = slot.pointee.index
    tally.delivered += 1
    if tally.delivered == tally.expected { cloop_unref(tally.loop) }
  }

  @Test(arguments: BackendUnderTest.allCases)
  func callsFromFourThreadsAreEachDeliveredOnce(_ backend: BackendUnderTest) throws {
    let loop = try makeLoop(backend)
    let threads = 4
    let perThread = 10_000
    let total = threads * perThread
    let tally = Tally(loop: loop, threads: threads, expected: total)
    let slots = UnsafeMutablePointer<Slot>.allocate(capacity: total)
    slots.initialize(repeating: Slot(), count: total)
    defer { slots.deinitialize(count: total); slots.deallocate() }
    for t in 0..<threads {
      for i in 0..<perThread {
        let slot = slots + (t * perThread + i)
        slot.pointee.thread = t
        slot.pointee.index = i
        slot.pointee.tally = Unmanaged.passUnretained(tally)
        cloop_handle_init(Self.handle(of: slot), Self.delivered, UnsafeMutableRawPointer(slot))
      }
    }

    cloop_ref(loop)  // run must wait for calls not made yet; the last delivery unrefs
    let sharedLoop = SendableLoop(loop: loop)
    let sharedSlots = SendablePointer(pointer: slots)
    let workers = (0..<threads).map { t in
      startThread {
        for i in 0..<perThread {
          cloop_call_threadsafe(sharedLoop.loop, Self.handle(of: sharedSlots.pointer + (t * perThread + i)))
        }
      }
    }
    #expect(cloop_run(loop) == 0)
    workers.forEach(joinThread)  // before freeing: a caller may still be waking the loop

    #expect(tally.delivered == total)
    #expect(tally.outOfOrder == 0)  // FIFO per calling thread
    let deliveries = UnsafeMutableBufferPointer(start: slots, count: total).map(\.deliveries)
    #expect(deliveries.allSatisfy { $0 == 1 })
    #expect(cloop_loop_free(loop) == 0)
  }

  @Test func callFromTheLoopThreadItselfIsDelivered() throws {
    let loop = try makeLoop()
    let log = Log(loop: loop)
    let probe = Probe(1, log)
    cloop_call_threadsafe(loop, probe.handle)
    #expect(cloop_run(loop) == 0)
    #expect(log.order == [1])
    #expect(cloop_loop_free(loop) == 0)
  }
}
