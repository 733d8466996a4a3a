import Logging

/// The module's log (label `TinyAsync`, through swift-log): what must not
/// pass in silence but is no error of the caller's -- a failure nobody
/// retrieved, an accept retried for want of descriptors.
let logger = Logger(label: "TinyAsync")
