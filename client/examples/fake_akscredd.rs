//! A stand-in for akscredd that answers every connection with the same
//! ExecCredential, as fast as std allows: for timing `akscred token` alone.
//!
//! ```sh
//! cargo build --release -p akscred --example fake_akscredd
//! target/release/examples/fake_akscredd /tmp/akscred-bench.sock &
//! AKSCRED_SOCKET=/tmp/akscred-bench.sock hyperfine -N --warmup 100 --runs 1000 \
//!     'target/release/akscred token prod' '/bin/true'
//! ```

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

fn main() -> std::io::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "/tmp/akscred-bench.sock".into());
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    // An AKS access token is a 1.5-2.5 KiB JWT; use one of that size.
    let token = "x".repeat(2048);
    let body = format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"{token}","expirationTimestamp":"2026-01-01T00:00:00Z"}}}}"#
    );
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\ndate: Sat, 29 Nov 2025 12:00:00 GMT\r\n\r\n{body}",
        body.len()
    );
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // Read the request head before answering and closing: closing with
        // unread data would reset the connection.
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(answer.as_bytes());
    }
    Ok(())
}
