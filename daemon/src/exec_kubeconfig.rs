//! Kubeconfigs whose users run `akscred token CLUSTER`.
//!
//! They hold no secret: server, CA and an exec stanza only. The plugin is
//! named by absolute path, because kubectl 1.35 can restrict plugins to an
//! allow-list of paths and `PATH` differs between shells and services.
//! Strings are written as JSON strings, which are valid YAML double-quoted
//! scalars, so no YAML serialiser is needed and nothing can break quoting.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

pub struct Entry<'a> {
    pub cluster: &'a str,
    pub context: &'a str,
    pub namespace: Option<&'a str>,
    pub server: &'a str,
    pub ca_pem: Option<&'a [u8]>,
}

/// Where the plugin is: `[daemon] plugin_path`, else `akscred` next to the
/// daemon's own executable, else plain `akscred` from `PATH`.
pub fn plugin_path(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("akscred")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("akscred"))
}

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// User names carry a prefix so a merge never touches the user's own entries.
pub fn user_name(cluster: &str) -> String {
    format!("akscred-{cluster}")
}

/// `socket` is set when the daemon listens somewhere the plugin would not
/// look by default: the stanza then carries `AKSCRED_SOCKET`, so the file
/// works from any shell.
pub fn render(
    entries: &[Entry<'_>],
    plugin: &Path,
    socket: Option<&Path>,
    current: Option<&str>,
) -> String {
    let plugin = plugin.to_string_lossy();
    let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for e in entries {
        let _ = writeln!(
            out,
            "- name: {}\n  cluster:\n    server: {}",
            q(e.cluster),
            q(e.server)
        );
        if let Some(ca) = e.ca_pem {
            let _ = writeln!(
                out,
                "    certificate-authority-data: {}",
                base64::engine::general_purpose::STANDARD.encode(ca)
            );
        }
    }
    out.push_str("users:\n");
    for e in entries {
        let _ = writeln!(
            out,
            "- name: {}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args:\n      - token\n      - {}\n      interactiveMode: Never\n      provideClusterInfo: false\n      installHint: {}",
            q(&user_name(e.cluster)),
            q(&plugin),
            q(e.cluster),
            q(
                "akscred is part of akscred; install it and start akscredd (systemctl --user start akscredd.socket)"
            ),
        );
        if let Some(socket) = socket {
            let _ = writeln!(
                out,
                "      env:\n      - name: {}\n        value: {}",
                q(akscred_proto::SOCKET_ENV),
                q(&socket.to_string_lossy())
            );
        }
    }
    out.push_str("contexts:\n");
    for e in entries {
        let _ = writeln!(
            out,
            "- name: {}\n  context:\n    cluster: {}\n    user: {}",
            q(e.context),
            q(e.cluster),
            q(&user_name(e.cluster))
        );
        if let Some(ns) = e.namespace {
            let _ = writeln!(out, "    namespace: {}", q(ns));
        }
    }
    let current = current.or_else(|| entries.first().map(|e| e.context));
    let _ = writeln!(out, "current-context: {}", q(current.unwrap_or("")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_kubeconfig_that_runs_the_plugin() {
        let entries = [
            Entry {
                cluster: "prod",
                context: "prod-ctx",
                namespace: Some("web"),
                server: "https://prod.example:443",
                ca_pem: Some(b"-----BEGIN CERTIFICATE-----\n"),
            },
            Entry {
                cluster: "odd \"name\"",
                context: "odd",
                namespace: None,
                server: "https://x",
                ca_pem: None,
            },
        ];
        let y = render(&entries, Path::new("/usr/bin/akscred"), None, None);
        assert!(!y.contains("env:"), "{y}");
        assert!(y.contains("command: \"/usr/bin/akscred\""), "{y}");
        assert!(y.contains("- token\n      - \"prod\""), "{y}");
        assert!(y.contains("interactiveMode: Never"), "{y}");
        assert!(y.contains("name: \"odd \\\"name\\\"\""), "{y}");
        assert!(y.contains("namespace: \"web\""), "{y}");
        assert!(y.contains("current-context: \"prod-ctx\""), "{y}");
        assert!(
            y.contains("certificate-authority-data: LS0tLS1CRUdJTi"),
            "{y}"
        );
        let one = render(
            &entries[..1],
            Path::new("/a"),
            Some(Path::new("/tmp/s.sock")),
            Some("x"),
        );
        assert!(
            one.contains("env:\n      - name: \"AKSCRED_SOCKET\"\n        value: \"/tmp/s.sock\""),
            "{one}"
        );
        assert!(one.ends_with("current-context: \"x\"\n"), "{one}");
    }
}
