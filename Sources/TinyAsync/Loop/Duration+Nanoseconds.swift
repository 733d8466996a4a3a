extension Duration {
  /// The duration in whole nanoseconds (rounded toward zero), saturating at
  /// `Int64.min`/`Int64.max` instead of trapping: the C core takes `int64_t`
  /// nanoseconds and treats a huge delay as "never" (about 292 years).
  var saturatingNanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if overflow { return seconds < 0 ? .min : .max }
    let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
    if overflow2 { return seconds < 0 ? .min : .max }
    return sum
  }
}
