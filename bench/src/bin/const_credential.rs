//! The floor for a Rust exec plugin: an ordinary `fn main` that prints a
//! constant ExecCredential of the size akscred prints (a 2 KiB token), with
//! no socket and no parsing. Built with the workspace's release profile.

use std::io::Write;

fn main() {
    let token = "x".repeat(2048);
    let body = format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{{"token":"{token}","expirationTimestamp":"2099-01-01T00:00:00Z"}}}}"#
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(body.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
