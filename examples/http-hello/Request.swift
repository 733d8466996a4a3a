// A deliberately small HTTP/1.1 request-head parser: enough for a "hello"
// server that keeps connections alive, and strict about what it refuses.

/// What the server needs from a request head.
struct RequestHead {
  var method: Substring
  var target: Substring
  var version: Substring  // "HTTP/1.1" or "HTTP/1.0"
  /// Bytes of body that follow the head (Content-Length), to read and drop.
  var contentLength: Int
  /// Whether the client asked to keep the connection open afterwards.
  var keepAlive: Bool
}

/// Why a request head was refused; each maps to a status line.
enum RequestError: Error {
  case badRequest(String)  // 400
  case notImplemented(String)  // 501 (e.g. chunked request bodies)

  var status: String {
    switch self {
    case .badRequest: "400 Bad Request"
    case .notImplemented: "501 Not Implemented"
    }
  }

  /// What was wrong, for the response body.
  var reason: String {
    switch self {
    case .badRequest(let why), .notImplemented(let why): why
    }
  }
}

/// Parses a request head: the bytes up to and including the blank line.
func parseRequestHead(_ bytes: ArraySlice<UInt8>) throws(RequestError) -> RequestHead {
  guard let text = String(validating: bytes, as: UTF8.self) else {
    throw .badRequest("the head is not UTF-8")
  }
  var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)[...]
  guard let requestLine = lines.popFirst() else { throw .badRequest("no request line") }
  let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
  guard parts.count == 3, !parts[0].isEmpty, parts[1].first == "/" || parts[1] == "*" else {
    throw .badRequest("malformed request line")
  }
  guard parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0" else {
    throw .badRequest("unsupported version \(parts[2])")
  }
  var head = RequestHead(
    method: parts[0], target: parts[1], version: parts[2],
    contentLength: 0, keepAlive: parts[2] == "HTTP/1.1")
  for line in lines where !line.isEmpty {
    guard let colon = line.firstIndex(of: ":") else { throw .badRequest("header without a colon") }
    let name = line[..<colon].lowercased()
    let value = line[line.index(after: colon)...].trimmingSpaces()
    switch name {
    case "content-length":
      guard let n = Int(value), n >= 0 else { throw .badRequest("bad Content-Length") }
      head.contentLength = n
    case "transfer-encoding":
      throw .notImplemented("chunked request bodies")
    case "connection":
      let v = value.lowercased()
      if v.contains("close") { head.keepAlive = false }
      if v.contains("keep-alive") { head.keepAlive = true }
    default:
      break
    }
  }
  return head
}

extension Substring {
  func trimmingSpaces() -> Substring {
    var s = self
    while s.first == " " || s.first == "\t" { s.removeFirst() }
    while s.last == " " || s.last == "\t" { s.removeLast() }
    return s
  }
}
