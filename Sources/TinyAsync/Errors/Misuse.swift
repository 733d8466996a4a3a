/// Misuse stops the program with a message that names it, in every build.
///
/// Swift's `precondition` and `preconditionFailure` print their message
/// only in debug builds: in a release build (`-O`) they stop the program
/// without a word. A user who calls `sleep(for:)` off the loop, or releases
/// a lock nobody holds, must read what went wrong in a release build too,
/// so the checks of this module go through these, which end in
/// `fatalError` (it prints its message in `-O` builds as well).

/// Stops the program with `message` unless `condition` holds.
@inline(__always)
func ensure(_ condition: Bool, _ message: @autoclosure () -> String) {
  if !condition { misuse(message()) }
}

/// Stops the program with `message`.
func misuse(_ message: String) -> Never {
  fatalError(message)
}
