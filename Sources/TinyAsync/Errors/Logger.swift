import Logging

/// The log of a loop made without a `logger:` (label `TinyAsync`, through
/// swift-log): what must not pass in silence but is no error of the
/// caller's -- a failure nobody retrieved, an accept retried for want of
/// descriptors. Where it goes is swift-log's process-wide choice
/// (`LoggingSystem.bootstrap`); a loop's own is ``EventLoop/logger``.
let defaultLogger = Logger(label: "TinyAsync")
