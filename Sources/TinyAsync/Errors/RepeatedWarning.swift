import Logging

/// A warning for a condition that repeats while it lasts (out of file
/// descriptors on accept: the listener retries every 10 ms): logged once
/// when it starts, and once more, with how often it came and for how long,
/// when it ends -- two lines for an episode, not one per retry.
///
/// A value type kept by whoever meets the condition (a listener's accept
/// loop); not shared. `now` is the loop's clock.
struct RepeatedWarning {
  /// The first occurrence's time and the count, while the condition lasts.
  private var started: Duration?
  private var count = 0

  /// The condition happened (again): logs `message()` to `logger` if it is new.
  mutating func occurred(at now: Duration, logger: Logger, _ message: @autoclosure () -> String) {
    count += 1
    if started == nil {
      started = now
      logger.warning("\(message()) (logged once while it lasts)")
    }
  }

  /// The condition is over (the operation worked): logs how long it
  /// lasted, if it was on.
  mutating func ended(at now: Duration, logger: Logger, _ what: @autoclosure () -> String) {
    guard let started else { return }
    let ms = (now - started).saturatingNanoseconds / 1_000_000
    logger.notice("\(what()): recovered after \(count) failures over \(ms) ms")
    self.started = nil
    count = 0
  }
}
