internal import CLoop
internal import Glibc

/// A program started by this one, on a loop (asyncio's
/// `create_subprocess_exec`): its standard streams as connections, a wait
/// for its exit that parks only the caller, and signals.
///
/// A piped stream is one end of a socket pair, so it is an ordinary
/// ``TCPConnection`` here -- the same reads, writes, `read(until:)` and
/// ``TCPConnection/shutdown()`` -- and an ordinary fd to the program. Close
/// (or shut down) ``stdin`` to give the program end of input.
///
/// The exit is learnt through a pidfd, on both backends, and the child is
/// always reaped: when it exits, or -- if this object goes away first, or
/// its loop closes -- by the C core, so it never stays a zombie. Dropping a
/// `ChildProcess` does not kill the program.
///
/// Loop-confined: not `Sendable`.
///
/// ```swift
/// try EventLoop.run {
///     let child = try ChildProcess.spawn("sort", stdin: .pipe, stdout: .pipe)
///     try await child.stdin!.write("banana\napple\n")
///     child.stdin!.close()                       // end of input
///     let first = try await child.stdout!.read(until: UInt8(ascii: "\n"))  // "apple\n"
///     print(try await child.wait())              // exit 0
/// }
/// ```
public final class ChildProcess {
  /// What a standard stream of the child is connected to.
  ///
  /// ```swift
  /// let quiet = try ChildProcess.spawn("make", stdout: .null, stderr: .pipe)
  /// ```
  public enum Stream: Sendable {
    /// This process's own.
    case inherit
    /// A stream between the two: ``stdin``, ``stdout`` or ``stderr``.
    case pipe
    /// `/dev/null`.
    case null
  }

  /// How a child process ended.
  ///
  /// ```swift
  /// switch try await child.wait() {
  /// case .exited(0): print("ok")
  /// case .exited(let code): print("failed with \(code)")
  /// case .signaled(let signal): print("killed by \(signal)")
  /// }
  /// ```
  public enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
    /// It exited with this code (0-255).
    case exited(Int32)
    /// A signal ended it.
    case signaled(Signal)

    /// `true` for an exit code of 0.
    public var succeeded: Bool { self == .exited(0) }

    /// `exit 0`, `killed by SIGTERM`.
    public var description: String {
      switch self {
      case .exited(let code): "exit \(code)"
      case .signaled(let signal): "killed by \(signal)"
      }
    }
  }

  /// The loop it belongs to.
  public let loop: EventLoop
  /// Its process id (once reaped, another process may get it).
  public let pid: Int32
  /// Our end of its standard input, when it was `.pipe`.
  public let stdin: TCPConnection?
  /// Our end of its standard output, when it was `.pipe`.
  public let stdout: TCPConnection?
  /// Our end of its standard error, when it was `.pipe`.
  public let stderr: TCPConnection?
  /// The C record, at an address the C core keeps until it is released.
  private let record: Pinned<cloop_process>
  var cProcess: UnsafeMutablePointer<cloop_process> { record.pointer }

  init(loop: EventLoop, record: consuming Pinned<cloop_process>) {
    let cProcess = record.pointer
    self.loop = loop
    self.record = record
    pid = cProcess.pointee.pid
    // The connections own the fds now: the C record lets go of them.
    func take(_ i: Int) -> TCPConnection? {
      let fd = withUnsafeMutableBytes(of: &cProcess.pointee.stdio) { $0.load(fromByteOffset: i * 4, as: Int32.self) }
      guard fd >= 0 else { return nil }
      withUnsafeMutableBytes(of: &cProcess.pointee.stdio) { $0.storeBytes(of: -1, toByteOffset: i * 4, as: Int32.self) }
      return TCPConnection(fd: fd, loop: loop)
    }
    stdin = take(0)
    stdout = take(1)
    stderr = take(2)
  }

  deinit {
    // A child still running is reaped by the C core when it exits.
    _ = cloop_process_release(cProcess)
  }

  /// Starts `program` with `arguments`.
  ///
  /// - Parameters:
  ///   - program: A path, or a name looked up in `$PATH`.
  ///   - arguments: Its arguments (`argv[1...]`; `argv[0]` is `program`).
  ///   - environment: Its environment; `nil`: this process's.
  ///   - workingDirectory: Its working folder; `nil`: this process's.
  ///   - stdin: What its standard input is: inherited, a pipe, or null.
  ///   - stdout: What its standard output is, likewise.
  ///   - stderr: What its standard error is, likewise.
  ///   - loop: The loop it belongs to; by default the one running here.
  /// - Throws: the failed exec's own error -- `ENOENT` for a program that
  ///   does not exist, `EACCES` for one that is not executable -- never a
  ///   child that exits 127; `EMFILE`, ``TinyAsyncError/outOfMemory``.
  public static func spawn(
    _ program: String,
    arguments: [String] = [],
    environment: [String: String]? = nil,
    workingDirectory: String? = nil,
    stdin: Stream = .inherit,
    stdout: Stream = .inherit,
    stderr: Stream = .inherit,
    on loop: EventLoop? = nil
  ) throws(TinyAsyncError) -> ChildProcess {
    let loop = loop ?? EventLoop.running(for: "ChildProcess.spawn")
    loop.checkThread("ChildProcess.spawn")
    let record = Pinned(cloop_process())
    let cProcess = record.pointer
    let rc = withCStrings([program] + arguments) { argv in
      withCStrings(environment.map { $0.map { "\($0.key)=\($0.value)" }.sorted() }) { envp in
        program.withCString { file in
          withOptionalCString(workingDirectory) { cwd in
            var options = cloop_process_options()
            options.file = file
            options.argv = UnsafePointer(argv)
            options.envp = envp.map { UnsafePointer($0) }
            options.cwd = cwd
            options.stdio = (stdin.cValue, stdout.cValue, stderr.cValue)
            return cloop_process_spawn(loop.cLoop, cProcess, &options)
          }
        }
      }
    }
    if rc < 0 { throw TinyAsyncError(code: rc, context: "spawn \(program)") }
    return ChildProcess(loop: loop, record: record)
  }

  /// How it ended, once it has (and has been reaped); `nil` while it runs.
  public var exitStatus: ExitStatus? {
    loop.checkThread("ChildProcess.exitStatus")
    let p = cProcess.pointee
    guard p.exited != 0 else { return nil }
    return p.term_signal != 0 ? .signaled(Signal(p.term_signal)) : .exited(p.exit_code)
  }

  /// Waits until it has exited, parking only the calling task.
  ///
  /// - Throws: ``TinyAsyncError/cancelled``, ``TinyAsyncError/timedOut``:
  ///   the program runs on (wait again, ``kill(_:)`` it, or let it go).
  public func wait() async throws(TinyAsyncError) -> ExitStatus {
    loop.checkThread("ChildProcess.wait()")
    if let exitStatus { return exitStatus }
    try await ProcessWait(process: self).wait().get()
    return exitStatus!
  }

  /// The fiber form of ``wait()-()``: parks the calling fiber until the
  /// program has exited.
  @available(*, noasync, message: "in async code, use try await wait()")
  public func wait() throws(TinyAsyncError) -> ExitStatus {
    loop.checkThread("ChildProcess.wait()")
    if let exitStatus { return exitStatus }
    let p = cProcess
    try fiberCall("ChildProcess.wait()") { cloop_process_wait(p) }
    return exitStatus!
  }

  /// Sends `signal` (default `SIGTERM`) to the program; never to another
  /// process that got its pid after it was reaped.
  /// - Throws: `ESRCH` once it has been reaped.
  public func kill(_ signal: Signal = .terminate) throws(TinyAsyncError) {
    loop.checkThread("ChildProcess.kill(_:)")
    _ = try TinyAsyncError.check(cloop_process_kill(cProcess, signal.rawValue), "kill process \(pid)")
  }
}

@available(*, unavailable, message: "a ChildProcess belongs to its loop's thread")
extension ChildProcess: Sendable {}

extension ChildProcess.Stream {
  var cValue: Int32 {
    switch self {
    case .inherit: Int32(CLOOP_STDIO_INHERIT)
    case .pipe: Int32(CLOOP_STDIO_PIPE)
    case .null: Int32(CLOOP_STDIO_NULL)
    }
  }
}

/// A task waiting for a child's exit: the C process watched, with a
/// callback that finishes the wait.
private final class ProcessWait: LoopWait<Void, TinyAsyncError>, @unchecked Sendable {
  let process: ChildProcess

  init(process: ChildProcess) {
    self.process = process
    super.init(loop: process.loop)
  }

  override func start() {
    let retained = Unmanaged.passRetained(self)
    let rc = cloop_process_watch(process.cProcess, processExited, retained.toOpaque())
    if rc < 0 {
      retained.release()
      finish(rc == -ECHILD ? .success(()) : .failure(TinyAsyncError(code: rc)))
    }
  }

  override func stop() {
    if cloop_process_unwatch(process.cProcess) != 0 {
      Unmanaged.passUnretained(self).release()
    }
  }
}

private let processExited: cloop_process_fn = { p in
  let wait = Unmanaged<ProcessWait>.fromOpaque(p!.pointee.data).takeRetainedValue()
  wait.finish(.success(()))
}

/// Calls `body` with a NULL-terminated C array of `strings`, or NULL for nil.
private func withCStrings<R>(_ strings: [String]?, _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> R) -> R {
  guard let strings else { return body(nil) }
  let copies = strings.map { strdup($0) }
  defer { for copy in copies { free(copy) } }
  var array = copies + [nil]
  return array.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
  withCStrings(Optional(strings)) { body($0!) }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
  guard let string else { return body(nil) }
  return string.withCString { body($0) }
}
