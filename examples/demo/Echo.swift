// Part 5 of the demo: an echo server and its clients over loopback, on the
// async front and on fibers (added once TCP is in the Swift layer).
import TinyAsync

func echoDemos(_ loop: EventLoop) async throws {
}
