import Logging
import Testing
@testable import TinyAsync

/// A LogHandler that keeps what it is given (level and message).
private struct RecordingHandler: LogHandler {
  let log: SharedLog<String>
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace
  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }
  func log(event: LogEvent) {
    log.append("\(event.level): \(event.message)")
  }
}

private func recordingLogger(_ log: SharedLog<String>) -> Logger {
  Logger(label: "test.loop") { _ in RecordingHandler(log: log) }
}

private struct Lost: Error {}

@Suite("The loop's logger: injectable, per loop")
struct LoopLoggerTests {
  @Test func anUnretrievedTaskErrorLandsInTheLoopsLogger() throws {
    let log = SharedLog<String>()
    let loop = try EventLoop(logger: recordingLogger(log))
    try loop.runUntilComplete {
      loop.spawn(name: "careless") { () async throws -> Int in throw Lost() }
      try await sleep(for: .milliseconds(1))
    }
    #expect(log.all == ["warning: task 'careless' (TaskHandle<Int>) failed and its error was never retrieved: Lost()"])
  }

  @Test func anUnretrievedFiberErrorToo() throws {
    let log = SharedLog<String>()
    let loop = try EventLoop(logger: recordingLogger(log))
    try loop.runFiberUntilComplete {
      loop.spawnFiber(name: "careless fiber") { () throws -> Int in throw Lost() }
      try sleep(for: .milliseconds(1))
    }
    #expect(log.all.count == 1)
    #expect(log.all.first?.contains("'careless fiber'") == true)
    #expect(log.all.first?.contains("never retrieved: Lost()") == true)
  }

  @Test func swappingTheLoggerSendsLaterMessagesToTheNewOne() throws {
    let first = SharedLog<String>(), second = SharedLog<String>()
    let loop = try EventLoop(logger: recordingLogger(first))
    #expect(loop.logger.label == "test.loop")
    try loop.runUntilComplete {
      loop.spawn(name: "one") { () async throws -> Int in throw Lost() }
      try await sleep(for: .milliseconds(1))
      loop.logger = recordingLogger(second)
      loop.spawn(name: "two") { () async throws -> Int in throw Lost() }
      try await sleep(for: .milliseconds(1))
    }
    #expect(first.all.count == 1 && first.all[0].contains("task 'one'"))
    #expect(second.all.count == 1 && second.all[0].contains("task 'two'"))
  }

  @Test func withoutOneTheLoopLogsAsTinyAsync() throws {
    let loop = try EventLoop()
    #expect(loop.logger.label == "TinyAsync")
  }
}
