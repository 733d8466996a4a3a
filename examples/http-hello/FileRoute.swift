// GET /file: the file given with --file PATH, streamed with
// TCPConnection.send(file:) -- io_uring's READ requests or the work pool,
// 64 KiB at a time, so a large or cold file never stalls the other
// connections. The file is opened per request (a file replaced on disk is
// served new) and its size taken from a stat; a missing file is 404, a
// file that shrank while it was sent ends the connection (its
// Content-Length can no longer be kept).
import Glibc
import TinyAsync

/// Answers a GET or HEAD of /file; returns whether the connection may
/// stay open.
func serveFile(_ path: String?, _ request: RequestHead, on connection: TCPConnection, keepAlive: Bool) async throws
  -> Bool
{
  guard let path else {
    try await connection.write(response("404 Not Found", body: "no --file given\n", keepAlive: keepAlive))
    return keepAlive
  }
  let file: File, size: Int
  switch await openSized(path) {
  case .success(let opened): (file, size) = opened
  case .failure(let error) where error.errno == ENOENT || error.errno == EISDIR:
    try await connection.write(response("404 Not Found", body: "\(error)\n", keepAlive: keepAlive))
    return keepAlive
  case .failure(let error) where error.errno == EACCES:
    try await connection.write(response("403 Forbidden", body: "\(error)\n", keepAlive: keepAlive))
    return keepAlive
  case .failure(let error): throw error
  }
  var head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(size)\r\n"
  if !keepAlive {
    head += "Connection: close\r\n"
  } else if request.version == "HTTP/1.0" {
    head += "Connection: keep-alive\r\n"
  }
  head += "\r\n"
  try await connection.write(head)
  if request.method == "HEAD" { return keepAlive }
  let sent = try await connection.send(file: file, offset: 0, count: size)
  return keepAlive && sent == size
}

/// The file at `path`, opened, and its size.
func openSized(_ path: String) async -> Result<(File, Int), TinyAsyncError> {
  do throws(TinyAsyncError) {
    let file = try await File.open(path)
    return .success((file, try await file.stat().size))
  } catch {
    return .failure(error)
  }
}
