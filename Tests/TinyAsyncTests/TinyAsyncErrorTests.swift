import CLoop
import Glibc
import Testing
@testable import TinyAsync

@Suite("TinyAsyncError: C codes become named cases")
struct TinyAsyncErrorTests {
  /// One pointer (the cases' payloads are boxed): an inline 48-byte error
  /// in every typed-throws async frame made each spawned task allocate a
  /// second slab of task memory (see the type's comment).
  @Test func theErrorIsOnePointer() {
    #expect(MemoryLayout<TinyAsyncError>.size == MemoryLayout<UnsafeRawPointer>.size)
    let error = TinyAsyncError.system(errno: EIO, message: "I/O error", context: "read /x")
    #expect(error.errno == EIO && error.context == "read /x")
  }

  @Test func codesMapToNamedCases() {
    #expect(TinyAsyncError(code: CLOOP_ENOBACKEND) == .backendUnavailable)
    #expect(TinyAsyncError(code: -ENOMEM) == .outOfMemory)
    #expect(TinyAsyncError(code: -ECANCELED) == .cancelled)
    #expect(TinyAsyncError(code: -ETIMEDOUT) == .timedOut)
    #expect(TinyAsyncError(code: -ECONNREFUSED) == .connectionRefused)
    #expect(TinyAsyncError(code: -ECONNRESET) == .connectionReset)
    #expect(TinyAsyncError(code: -EPIPE) == .brokenPipe)
    #expect(TinyAsyncError(code: -EADDRINUSE) == .addressInUse)
    #expect(TinyAsyncError(code: CLOOP_ENOHOST) == .hostNotFound)
    // ENOENT is a missing file, not a missing host.
    #expect(TinyAsyncError(code: -ENOENT) == .system(errno: ENOENT, message: String(cString: strerror(ENOENT))))
    #expect(TinyAsyncError(code: -EBADF) == .closed)
    #expect(TinyAsyncError(code: CLOOP_ENODELIM) == .delimiterNotFound)
    #expect(TinyAsyncError(code: -EACCES) == .system(errno: EACCES, message: String(cString: strerror(EACCES))))
    // Each named case goes back to the code it came from.
    for code in [-ECANCELED, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EPIPE, -EADDRINUSE, -EACCES, CLOOP_ENOBACKEND, CLOOP_ENOHOST, CLOOP_ENODELIM] {
      #expect(TinyAsyncError(code: code).code == code)
    }
    #expect(TinyAsyncError.connectionRefused.message == String(cString: strerror(ECONNREFUSED)))
    guard case .library(let code, let message, _) = TinyAsyncError(code: -29_999) else {
      Issue.record("an unknown library code must map to .library")
      return
    }
    #expect(code == -29_999)
    #expect(!message.isEmpty)
  }

  @Test func messagesComeFromTheCCore() {
    #expect(TinyAsyncError.backendUnavailable.message == String(cString: cloop_strerror(CLOOP_ENOBACKEND)))
    #expect(TinyAsyncError.outOfMemory.message == String(cString: strerror(ENOMEM)))
    #expect("\(TinyAsyncError.system(errno: ENOENT, message: "No such file or directory"))"
      == "No such file or directory (errno 2)")
  }

  /// A typo in `$CLOOP_BACKEND` or `$CLOOP_SWITCH` names the variable, the
  /// value and what is accepted. In a child process: the environment is the
  /// whole test process's. (An exit test captures nothing: one per variable.)
  @Test func aBadBackendVariableSaysWhichAndWhatIsAccepted() async {
    let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
      setenv("CLOOP_BACKEND", "URING", 1)
      TinyAsyncErrorTests.printLoopError()
    }
    let text = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
    for word in ["invalidSetting", "CLOOP_BACKEND=\"URING\"", "epoll", "uring", "auto"] {
      #expect(text.contains(word), "\(text) lacks \(word)")
    }
  }

  @Test func aBadSwitchVariableSaysWhichAndWhatIsAccepted() async {
    let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
      setenv("CLOOP_SWITCH", "fastest", 1)
      TinyAsyncErrorTests.printLoopError()
    }
    let text = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
    for word in ["invalidSetting", "CLOOP_SWITCH=\"fastest\"", "asm", "fast", "ucontext", "auto"] {
      #expect(text.contains(word), "\(text) lacks \(word)")
    }
  }

  /// Makes a loop and prints the error it throws, and whether it is the
  /// named case.
  static func printLoopError() {
    do {
      _ = try EventLoop()
      print("no error")
    } catch {
      if case .invalidSetting(let code, _, _) = error, code == CLOOP_EBADENV { print("invalidSetting") }
      print("\(error)")
    }
  }

  @Test func askingForIoUringByNameRunsItOrThrowsBackendUnavailable() {
    do {
      let loop = try EventLoop(backend: .ioUring)
      #expect(loop.backend == .ioUring)
    } catch {
      #expect(error == .backendUnavailable)  // typed throws: error is TinyAsyncError
    }
  }

  @Test func backendsReportWhatRuns() throws {
    #expect(try EventLoop(backend: .epoll).backend == .epoll)
    let automatic = try EventLoop().backend
    #expect(automatic == .epoll || automatic == .ioUring)
    #expect(EventLoop.Backend.epoll.description == "epoll")
    #expect(EventLoop.Backend.ioUring.description == "io_uring")
    #expect(EventLoop.Backend.automatic.description == "automatic")
  }
}
