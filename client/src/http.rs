//! A minimal HTTP/1.1 client over a Unix socket, just enough for akscredd.
//!
//! Why not hyper: `akscred token` runs once per kubectl command, so its whole
//! cost is process start plus one round trip. An async runtime, or any
//! general-purpose client, would cost more than the rest of the program. The
//! daemon (hyper, behind axum) answers with either `Content-Length` or chunked
//! transfer coding, or closes the connection to end the body; the parser
//! accepts all three and nothing it cannot decode.
//!
//! The parser is a resumable state machine over one buffer: it is fed after
//! every `read`, so a slow answer costs no rescans, and chunked bodies are
//! decoded in place, so a token answer needs two allocations (request and
//! buffer) and usually a single `read`.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Largest answer accepted, head and body together. A kubeconfig for
/// hundreds of clusters is well under this; anything bigger is a broken peer.
pub const MAX_RESPONSE: usize = 16 << 20;
/// Largest header section accepted.
const MAX_HEAD: usize = 64 << 10;
/// Largest chunk-size line (size plus extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 << 10;
/// First read buffer: an ExecCredential (a JWT of 1-3 KiB) fits with room to
/// spare, and `vec![0; n]` of this size costs no page faults to speak of.
const INITIAL_BUFFER: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("cannot send the request: {0}")]
    Send(io::Error),
    #[error("cannot read the answer: {0}")]
    Receive(io::Error),
    #[error("no complete answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the connection was closed without an answer")]
    Closed,
    #[error("the connection was closed in the middle of the answer")]
    Truncated,
    #[error("the answer is larger than {} MiB", MAX_RESPONSE >> 20)]
    TooLarge,
    #[error("malformed HTTP answer: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// A complete answer. The body lives in the read buffer, so handing it to
/// stdout needs no copy.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    buf: Vec<u8>,
    reason: Range<usize>,
    body: Range<usize>,
}

impl Response {
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// The reason phrase, if it is readable text.
    pub fn reason(&self) -> &str {
        std::str::from_utf8(&self.buf[self.reason.clone()]).unwrap_or("")
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body with a trailing newline, ready for a single `write`.
    pub fn into_body_line(mut self) -> Vec<u8> {
        let Range { start, end } = self.body;
        self.buf.truncate(end);
        if self.buf.last() != Some(&b'\n') || start == end {
            self.buf.push(b'\n');
        }
        self.buf.drain(..start);
        self.buf
    }
}

/// Sends one request on a fresh connection and reads the whole answer, all
/// within `timeout`.
pub fn exchange(
    socket: &Path,
    method: Method,
    target: &str,
    timeout: Duration,
) -> Result<Response, Error> {
    let deadline = Instant::now() + timeout;
    // std has no connect timeout for Unix sockets. Connecting only blocks when
    // the listen backlog is full; systemd's socket unit has a deep backlog.
    let mut stream = UnixStream::connect(socket).map_err(Error::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(Error::Receive)?;
    // No write timeout: names are bounded (cli::MAX_NAME_LEN), so the request
    // is far smaller than a socket buffer and the write cannot block. The write half stays open: hyper closes a
    // connection at once when it reads EOF, which would drop the answer.
    stream.write_all(&request(method, target)).map_err(|e| {
        if is_closed(&e) {
            Error::Closed
        } else {
            Error::Send(e)
        }
    })?;

    let mut buf = vec![0u8; INITIAL_BUFFER];
    let mut filled = 0;
    let mut parser = Parser::default();
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_RESPONSE {
                return Err(Error::TooLarge);
            }
            buf.resize((buf.len() * 2).min(MAX_RESPONSE), 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Error::Timeout(timeout));
            }
            Err(e) if is_closed(&e) => {
                return Err(if filled == 0 {
                    Error::Closed
                } else {
                    Error::Truncated
                });
            }
            Err(e) => return Err(Error::Receive(e)),
        };
        filled += n;
        if parser.advance(&mut buf[..filled], n == 0)? {
            break;
        }
        if n == 0 {
            // advance() settles every answer at EOF; this is a backstop.
            return Err(Error::Truncated);
        }
        // SO_RCVTIMEO bounds each read, not the whole answer: shrink it so a
        // peer dribbling bytes cannot hold kubectl past the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout(timeout));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(Error::Receive)?;
    }
    Ok(parser.finish(buf))
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

/// The request bytes, in one buffer so they go out in one `write`.
pub fn request(method: Method, target: &str) -> Vec<u8> {
    let (verb, extra): (&str, &str) = match method {
        Method::Get => ("GET ", ""),
        // A POST without a length is legal but some servers wait for a body.
        Method::Post => ("POST ", "Content-Length: 0\r\n"),
    };
    const TAIL: &str = " HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\n";
    let mut req = Vec::with_capacity(verb.len() + target.len() + TAIL.len() + extra.len() + 2);
    req.extend_from_slice(verb.as_bytes());
    req.extend_from_slice(target.as_bytes());
    req.extend_from_slice(TAIL.as_bytes());
    req.extend_from_slice(extra.as_bytes());
    req.extend_from_slice(b"\r\n");
    req
}

/// Appends `segment` percent-encoded as one path segment or query value:
/// everything but RFC 3986 unreserved characters is escaped, and so are the
/// dot segments `.` and `..`, which a router could otherwise resolve.
pub fn push_encoded(out: &mut String, segment: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let dot_segment = segment == "." || segment == "..";
    for &b in segment.as_bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~');
        if unreserved || (b == b'.' && !dot_segment) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Parses a complete answer held in memory, as if the peer then closed the
/// connection.
#[cfg(test)]
pub fn parse(bytes: &[u8]) -> Result<Response, Error> {
    let mut buf = bytes.to_vec();
    let mut parser = Parser::default();
    if !parser.advance(&mut buf, true)? {
        return Err(Error::Truncated);
    }
    Ok(parser.finish(buf))
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    /// 1xx, 204 and 304 answers carry no body whatever their headers say.
    Empty,
    Length(usize),
    Chunked,
    /// No length and no transfer coding: the body ends when the peer closes.
    UntilEof,
}

#[derive(Debug, Clone, Copy, Default)]
enum Chunk {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Trailers,
}

#[derive(Debug)]
struct Head {
    status: u16,
    reason: Range<usize>,
    framing: Framing,
}

#[derive(Debug, Default)]
struct Parser {
    /// Start of the head being looked for (moves past 1xx interim answers).
    head_start: usize,
    /// Where to resume looking for the blank line that ends the head.
    scan: usize,
    head: Option<Head>,
    body_start: usize,
    /// Next raw body byte not yet consumed.
    raw: usize,
    /// End of the decoded body; never past `raw`, so decoding in place is safe.
    out: usize,
    chunk: Chunk,
}

impl Parser {
    /// Consumes what has arrived. `buf` is everything read so far and `eof`
    /// says the peer has closed. Ok(true) once the answer is complete.
    fn advance(&mut self, buf: &mut [u8], eof: bool) -> Result<bool, Error> {
        if self.head.is_none() && !self.advance_head(buf, eof)? {
            return Ok(false);
        }
        let Some(head) = &self.head else {
            return Ok(false);
        };
        match head.framing {
            Framing::Empty => {
                self.out = self.body_start;
                Ok(true)
            }
            Framing::Length(n) => {
                if buf.len() - self.body_start >= n {
                    self.out = self.body_start + n;
                    Ok(true)
                } else {
                    need_more(eof)
                }
            }
            Framing::UntilEof => {
                self.out = buf.len();
                Ok(eof)
            }
            Framing::Chunked => self.dechunk(buf, eof),
        }
    }

    fn advance_head(&mut self, buf: &[u8], eof: bool) -> Result<bool, Error> {
        loop {
            let seen = &buf[self.head_start..];
            let prefix = seen.len().min(5);
            if seen[..prefix] != b"HTTP/"[..prefix] {
                return Err(Error::Malformed("not an HTTP answer"));
            }
            let Some(end) = find_head_end(buf, self.scan) else {
                if seen.len() > MAX_HEAD {
                    return Err(Error::Malformed("header section too long"));
                }
                // A CR LF that straddles the next read must be seen again.
                self.scan = buf.len().saturating_sub(2).max(self.head_start);
                if eof {
                    return Err(if buf.is_empty() {
                        Error::Closed
                    } else {
                        Error::Truncated
                    });
                }
                return Ok(false);
            };
            if end - self.head_start > MAX_HEAD {
                return Err(Error::Malformed("header section too long"));
            }
            let head = parse_head(buf, self.head_start, end)?;
            if (100..200).contains(&head.status) {
                // An interim answer (100 Continue, 103 Early Hints): the real
                // one follows.
                self.head_start = end;
                self.scan = end;
                continue;
            }
            self.head = Some(head);
            self.body_start = end;
            self.raw = end;
            self.out = end;
            return Ok(true);
        }
    }

    /// Decodes chunked transfer coding in place: chunk data is moved down over
    /// the size lines, so the body ends up contiguous at `body_start`.
    fn dechunk(&mut self, buf: &mut [u8], eof: bool) -> Result<bool, Error> {
        loop {
            match self.chunk {
                Chunk::Size => {
                    let Some(nl) = find_byte(buf, self.raw, b'\n') else {
                        if buf.len() - self.raw > MAX_CHUNK_LINE {
                            return Err(Error::Malformed("chunk size line too long"));
                        }
                        return need_more(eof);
                    };
                    let size = parse_chunk_size(trim_cr(&buf[self.raw..nl]))?;
                    if size > MAX_RESPONSE - (self.out - self.body_start) {
                        return Err(Error::TooLarge);
                    }
                    self.raw = nl + 1;
                    self.chunk = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(buf.len() - self.raw);
                    buf.copy_within(self.raw..self.raw + take, self.out);
                    self.raw += take;
                    self.out += take;
                    if take < left {
                        self.chunk = Chunk::Data(left - take);
                        return need_more(eof);
                    }
                    self.chunk = Chunk::DataEnd;
                }
                Chunk::DataEnd => {
                    match (buf.get(self.raw), buf.get(self.raw + 1)) {
                        (Some(b'\n'), _) => self.raw += 1,
                        (Some(b'\r'), Some(b'\n')) => self.raw += 2,
                        (None, _) | (Some(b'\r'), None) => return need_more(eof),
                        _ => return Err(Error::Malformed("chunk data longer than its size")),
                    }
                    self.chunk = Chunk::Size;
                }
                Chunk::Trailers => {
                    let Some(nl) = find_byte(buf, self.raw, b'\n') else {
                        return need_more(eof);
                    };
                    let line = trim_cr(&buf[self.raw..nl]);
                    self.raw = nl + 1;
                    // Trailer fields carry nothing akscred needs; skip them.
                    if line.is_empty() {
                        return Ok(true);
                    }
                }
            }
        }
    }

    fn finish(self, buf: Vec<u8>) -> Response {
        let (status, reason) = match self.head {
            Some(head) => (head.status, head.reason),
            None => (0, 0..0),
        };
        Response {
            status,
            buf,
            reason,
            body: self.body_start..self.out,
        }
    }
}

fn need_more(eof: bool) -> Result<bool, Error> {
    if eof {
        Err(Error::Truncated)
    } else {
        Ok(false)
    }
}

fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    buf[from..]
        .iter()
        .position(|&b| b == byte)
        .map(|i| from + i)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Finds the blank line that ends a header section, searching from `from`;
/// returns the index just past it. Bare LF line ends are accepted too.
fn find_head_end(buf: &[u8], mut from: usize) -> Option<usize> {
    while let Some(nl) = find_byte(buf, from, b'\n') {
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => from = nl + 1,
        }
    }
    None
}

/// Parses the status line and the headers that decide the framing of the
/// head in `buf[start..end]`.
fn parse_head(buf: &[u8], start: usize, end: usize) -> Result<Head, Error> {
    let mut lines = buf[start..end].split(|&b| b == b'\n').map(trim_cr);
    let status_line = lines.next().unwrap_or_default();
    // "HTTP/1.1 200 OK": version, one space, three digits, then an optional
    // space and reason phrase.
    let rest = status_line
        .strip_prefix(b"HTTP/1.")
        .ok_or(Error::Malformed("not an HTTP/1.x status line"))?;
    let (status, reason_offset) = match rest {
        [minor, b' ', a, b, c, tail @ ..]
            if minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            let status = [a, b, c]
                .iter()
                .fold(0u16, |n, &&d| n * 10 + u16::from(d - b'0'));
            // "HTTP/1." + minor + space + status = 12 bytes.
            (status, 12 + usize::from(!tail.is_empty()))
        }
        _ => return Err(Error::Malformed("bad status line")),
    };
    if status == 101 {
        return Err(Error::Malformed("unexpected protocol switch"));
    }
    let reason_start = (start + reason_offset).min(start + status_line.len());
    let reason = reason_start..start + status_line.len();

    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut other_coding = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Error::Malformed("folded header line"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Error::Malformed("header line without a colon"))?;
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            // "5, 5" (a list of equal values) is legal; anything else that is
            // not one number is a smuggling hazard and refused.
            for item in value.split(|&b| b == b',').map(trim_ows) {
                let n = parse_decimal(item)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::Malformed("conflicting Content-Length"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            for coding in value.split(|&b| b == b',').map(trim_ows) {
                if coding.eq_ignore_ascii_case(b"chunked") && !chunked {
                    chunked = true;
                } else if !coding.is_empty() {
                    other_coding = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-encoding")
            && !value.eq_ignore_ascii_case(b"identity")
        {
            // akscred sends no Accept-Encoding, so a compressed body is a
            // peer bug; printing it would hand kubectl garbage.
            return Err(Error::Malformed("unsupported Content-Encoding"));
        }
    }

    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked || other_coding {
        // Transfer-Encoding overrides Content-Length (RFC 9112, 6.3).
        if other_coding {
            return Err(Error::Malformed("unsupported Transfer-Encoding"));
        }
        Framing::Chunked
    } else if let Some(n) = length {
        if n > MAX_RESPONSE {
            return Err(Error::TooLarge);
        }
        Framing::Length(n)
    } else {
        Framing::UntilEof
    };
    Ok(Head {
        status,
        reason,
        framing,
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_decimal(s: &[u8]) -> Result<usize, Error> {
    if s.is_empty() {
        return Err(Error::Malformed("empty Content-Length"));
    }
    s.iter().try_fold(0usize, |n, &b| {
        if !b.is_ascii_digit() {
            return Err(Error::Malformed("Content-Length is not a number"));
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(b - b'0')))
            .ok_or(Error::TooLarge)
    })
}

/// "1a2;ext=1" -> 0x1a2. Extensions are allowed and ignored.
fn parse_chunk_size(line: &[u8]) -> Result<usize, Error> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = trim_ows(&line[..end]);
    if digits.is_empty() {
        return Err(Error::Malformed("empty chunk size"));
    }
    digits.iter().try_fold(0usize, |n, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Error::Malformed("bad chunk size")),
        };
        n.checked_mul(16)
            .and_then(|n| n.checked_add(usize::from(d)))
            .ok_or(Error::TooLarge)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn ok(bytes: &[u8]) -> Response {
        match parse(bytes) {
            Ok(r) => r,
            Err(e) => panic!("{e} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn err(bytes: &[u8]) -> Error {
        match parse(bytes) {
            Ok(r) => panic!("parsed {r:?}"),
            Err(e) => e,
        }
    }

    /// Feeds `bytes` in pieces of `step` bytes, the way reads deliver them.
    fn incremental(bytes: &[u8], step: usize) -> Result<Response, Error> {
        let mut buf = Vec::new();
        let mut parser = Parser::default();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            if parser.advance(&mut buf, false)? {
                return Ok(parser.finish(buf));
            }
        }
        if parser.advance(&mut buf, true)? {
            Ok(parser.finish(buf))
        } else {
            Err(Error::Truncated)
        }
    }

    const HYPER_LIKE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\ndate: Sat, 29 Nov 2025 06:40:00 GMT\r\n\r\n{\"a\":\"b\"}\r\n";

    #[test]
    fn content_length() {
        let r = ok(HYPER_LIKE);
        assert_eq!(r.status, 200);
        assert_eq!(r.reason(), "OK");
        assert!(r.is_success());
        assert_eq!(r.body(), b"{\"a\":\"b\"}\r\n");
    }

    #[test]
    fn content_length_ignores_bytes_after_the_body() {
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiEXTRA");
        assert_eq!(r.body(), b"hi");
    }

    #[test]
    fn content_length_list_of_equal_values() {
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(r.body(), b"hi");
    }

    #[test]
    fn conflicting_or_bad_content_length() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi!"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        ] {
            assert!(matches!(err(bad), Error::Malformed(_)), "{bad:?}");
        }
    }

    #[test]
    fn chunked() {
        let r = ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\nA;name=val\r\n:\"bcdefgh\"\r\n1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
        assert_eq!(r.body(), b"{\"a\":\"bcdefgh\"}");
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let r = ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        );
        assert_eq!(r.body(), b"hi");
    }

    #[test]
    fn bare_lf_line_ends() {
        let r = ok(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nhi\n0\n\n");
        assert_eq!(r.body(), b"hi");
    }

    #[test]
    fn every_split_point_gives_the_same_answer() {
        let chunked: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        for step in 1..chunked.len() {
            let r = incremental(chunked, step).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(r.body(), b"hello, world", "step {step}");
            assert_eq!(r.status, 200);
        }
        for step in 1..HYPER_LIKE.len() {
            let r = incremental(HYPER_LIKE, step).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(r.body(), b"{\"a\":\"b\"}\r\n", "step {step}");
        }
    }

    #[test]
    fn no_body_statuses() {
        for head in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
        ] {
            let r = ok(head);
            assert_eq!(r.body(), b"");
        }
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.body(), b"");
    }

    #[test]
    fn body_until_eof() {
        let r = ok(b"HTTP/1.0 500 Internal Server Error\r\nServer: x\r\n\r\noops");
        assert_eq!(r.status, 500);
        assert_eq!(r.reason(), "Internal Server Error");
        assert!(!r.is_success());
        assert_eq!(r.body(), b"oops");
    }

    #[test]
    fn status_without_reason() {
        let r = ok(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.status, 404);
        assert_eq!(r.reason(), "");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let r = ok(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(r.status, 200);
        assert_eq!(r.body(), b"ok");
    }

    #[test]
    fn garbage() {
        for bad in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"{\"token\":\"x\"}",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(err(bad), Error::Malformed(_)),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
        // Garbage is refused on its first bytes, without waiting for more.
        let mut parser = Parser::default();
        let mut buf = b"SSH-".to_vec();
        assert!(matches!(
            parser.advance(&mut buf, false),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn truncated() {
        assert!(matches!(err(b""), Error::Closed));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
            b"HTTP",
        ] {
            assert!(
                matches!(err(bad), Error::Truncated),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn oversized() {
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 16777217\r\n\r\n"),
            Error::TooLarge
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
            Error::TooLarge
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n"),
            Error::TooLarge
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n"),
            Error::TooLarge
        ));
        let mut huge_head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge_head.resize(MAX_HEAD + 100, b'a');
        assert!(matches!(err(&huge_head), Error::Malformed(_)));
    }

    #[test]
    fn body_line_adds_one_newline() {
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(r.into_body_line(), b"{}\n");
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}\n");
        assert_eq!(r.into_body_line(), b"{}\n");
        let r = ok(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n",
        );
        assert_eq!(r.into_body_line(), b"{}\n");
        let r = ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(r.into_body_line(), b"\n");
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            request(Method::Get, "/v1/status"),
            b"GET /v1/status HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            request(Method::Post, "/v1/reload"),
            b"POST /v1/reload HTTP/1.1\r\nHost: akscred\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn segments_are_percent_encoded() {
        let enc = |s: &str| {
            let mut out = String::new();
            push_encoded(&mut out, s);
            out
        };
        assert_eq!(enc("aks-prod_1.westeu~x"), "aks-prod_1.westeu~x");
        assert_eq!(enc("a b/c?d#e%f"), "a%20b%2Fc%3Fd%23e%25f");
        assert_eq!(enc("é"), "%C3%A9");
        assert_eq!(enc(".."), "%2E%2E");
        assert_eq!(enc("."), "%2E");
        assert_eq!(enc("..."), "...");
    }

    #[test]
    fn exchange_times_out_on_a_silent_peer() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path)?;
        let started = Instant::now();
        let res = exchange(&path, Method::Get, "/x", Duration::from_millis(200));
        assert!(matches!(res, Err(Error::Timeout(_))), "{res:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
        Ok(())
    }

    #[test]
    fn exchange_bounds_a_dribbling_peer_by_the_deadline() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path)?;
        let server = std::thread::spawn(move || -> io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            let mut req = [0u8; 512];
            let _ = conn.read(&mut req)?;
            conn.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ")?;
            for _ in 0..40 {
                if conn.write_all(b"a").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(())
        });
        let started = Instant::now();
        let res = exchange(&path, Method::Get, "/x", Duration::from_millis(300));
        assert!(matches!(res, Err(Error::Timeout(_))), "{res:?}");
        assert!(started.elapsed() < Duration::from_millis(1800));
        let _ = server.join();
        Ok(())
    }
}
