//! Where passwords come from, and the type that holds them.
//!
//! A [`Secret`] is zeroized when dropped and never prints its value: `Debug`
//! and `Display` show `…`, so a secret that ends up in a log line or an error
//! message by mistake leaks nothing.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use zeroize::Zeroizing;

/// A password, token, refresh token or assertion.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value, for the one place that must send it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Read straight into zeroizing memory (a key inside a kubeconfig, say).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"…\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("…")
    }
}

/// `password = { file = ... } | { env = ... } | { command = [...] } | { systemd_credential = ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
    Command(Vec<String>),
    SystemdCredential(String),
}

const EXPECTED_SOURCE: &str = "a table: { file = \"path\" } | { env = \"VAR\" } | { command = [\"prog\", \"arg\"] } | { systemd_credential = \"name\" }";

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SourceTable {
    File(PathBuf),
    Env(String),
    Command(Vec<String>),
    SystemdCredential(String),
}

/// Deserialized by hand because serde's own messages quote the value they
/// did not expect: `password = "hunter2"` must not come back in an error.
impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED_SOURCE)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretSource, A::Error> {
                let table =
                    SourceTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(match table {
                    SourceTable::File(p) => SecretSource::File(p),
                    SourceTable::Env(v) => SecretSource::Env(v),
                    SourceTable::Command(c) => SecretSource::Command(c),
                    SourceTable::SystemdCredential(n) => SecretSource::SystemdCredential(n),
                })
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "an inline secret is not accepted here (it would sit in the config file in clear); expected {EXPECTED_SOURCE}"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SecretSource, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SecretSource, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<SecretSource, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {0} is not set (or not valid UTF-8)")]
    Env(String),
    #[error("the secret command is empty: give the program and its arguments as a list")]
    EmptyCommand,
    #[error("cannot run the secret command `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("the secret command `{program}` failed ({status}); run it by hand to see why")]
    CommandFailed { program: String, status: String },
    #[error("the secret from {0} is not valid UTF-8")]
    NotUtf8(String),
    #[error("the secret from {0} is empty")]
    Empty(String),
    #[error(
        "the systemd credential {0} is not available: $CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)"
    )]
    NoCredentialsDirectory(String),
}

impl SecretSource {
    /// Where the secret comes from, for messages (never the secret itself).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Env(v) => format!("environment variable {v}"),
            SecretSource::Command(c) => {
                format!("command `{}`", c.first().map(String::as_str).unwrap_or(""))
            }
            SecretSource::SystemdCredential(n) => format!("systemd credential {n}"),
        }
    }

    /// Reads the secret now. Called on each sign-in, so a changed password
    /// file or vault entry is picked up without a restart.
    pub async fn read(&self) -> Result<Secret, SecretError> {
        let bytes = self.read_bytes().await?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| SecretError::NotUtf8(self.describe()))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err(SecretError::Empty(self.describe()));
        }
        Ok(Secret::new(text))
    }

    /// The raw bytes (a PKCS#12 file is binary), zeroized when dropped.
    pub async fn read_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let bytes = match self {
            SecretSource::File(path) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| SecretError::File {
                        path: path.clone(),
                        source,
                    })?
            }
            SecretSource::Env(var) => std::env::var_os(var)
                .map(|v| v.into_encoded_bytes())
                .ok_or_else(|| SecretError::Env(var.clone()))?,
            SecretSource::SystemdCredential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDirectory(name.clone()))?;
                let path = PathBuf::from(dir).join(name);
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| SecretError::File { path, source })?
            }
            SecretSource::Command(argv) => {
                let (program, args) = argv.split_first().ok_or(SecretError::EmptyCommand)?;
                let output = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .map_err(|source| SecretError::Spawn {
                        program: program.clone(),
                        source,
                    })?;
                let stdout = Zeroizing::new(output.stdout);
                if !output.status.success() {
                    return Err(SecretError::CommandFailed {
                        program: program.clone(),
                        status: output.status.to_string(),
                    });
                }
                return Ok(stdout);
            }
        };
        Ok(Zeroizing::new(bytes))
    }
}

impl SecretSource {
    /// Who besides its owner can read this source, as a warning with what
    /// to do; `None` when nobody else can (or it is not a file).
    ///
    /// Checked on the file system each time, so fixing the mode clears the
    /// warning. A warning and not a refusal, unlike a config others can
    /// write: refusing would not unread what was read, and would break
    /// kubectl for a setup that works.
    pub fn exposure(&self) -> Option<String> {
        match self {
            SecretSource::File(path) => file_exposure(path),
            // The environment and a command's output are not files; the
            // files of $CREDENTIALS_DIRECTORY are systemd's (0400, private
            // to the service).
            SecretSource::Env(_)
            | SecretSource::Command(_)
            | SecretSource::SystemdCredential(_) => None,
        }
    }
}

/// Whether a class of users (the file's group, or everyone else) can read
/// `path`: the file must grant them read, and every directory above it
/// search. A 0644 file inside a 0700 directory is safe, which is what
/// temporary directories and most `~/.config` setups are.
fn file_exposure(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let mode = std::fs::metadata(&real).ok()?.permissions().mode();
    let searchable = |bit: u32| {
        real.ancestors()
            .skip(1)
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & bit != 0))
    };
    let who = if mode & 0o004 != 0 && searchable(0o001) {
        "every user of this machine"
    } else if mode & 0o040 != 0 && searchable(0o010) {
        "the members of its group"
    } else {
        return None;
    };
    Some(format!(
        "{} is readable by {who} (mode {:04o}): run `chmod 600 {}`, and change the secret if someone else may have read it",
        real.display(),
        mode & 0o7777,
        real.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn secret_files_others_can_read_are_named_with_the_fix() {
        // Under /tmp (1777) and / (0755), which every user can search.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alice.password");
        std::fs::write(&file, "pw\n").unwrap();
        let source = SecretSource::File(file.clone());

        chmod(dir.path(), 0o700);
        chmod(&file, 0o644);
        assert_eq!(
            source.exposure(),
            None,
            "a 0644 file in a 0700 directory is out of reach"
        );
        chmod(dir.path(), 0o755);
        let w = source.exposure().expect("0644 in 0755 is readable by all");
        assert!(w.contains("every user") && w.contains("(mode 0644)"), "{w}");
        assert!(w.contains(&format!("chmod 600 {}", file.display())), "{w}");
        assert!(!w.contains("pw"), "never the secret itself: {w}");

        chmod(&file, 0o640);
        chmod(dir.path(), 0o705);
        assert_eq!(source.exposure(), None, "the group cannot search 0705");
        chmod(dir.path(), 0o750);
        let w = source.exposure().expect("0640 in 0750");
        assert!(w.contains("members of its group"), "{w}");

        chmod(&file, 0o600);
        chmod(dir.path(), 0o777);
        assert_eq!(source.exposure(), None);
        // Not files: nothing to say.
        assert_eq!(SecretSource::Env("X".into()).exposure(), None);
        assert_eq!(
            SecretSource::File(dir.path().join("missing")).exposure(),
            None
        );
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"…\"");
        assert_eq!(format!("{s}"), "…");
        assert_eq!(s.expose(), "hunter2");
    }

    #[tokio::test]
    async fn file_source_trims_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "p@ss word\n").unwrap();
        let s = SecretSource::File(path).read().await.unwrap();
        assert_eq!(s.expose(), "p@ss word");
    }

    #[tokio::test]
    async fn missing_file_names_the_path() {
        let err = SecretSource::File("/nonexistent/akscred-pw".into())
            .read()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/akscred-pw"), "{err}");
    }

    #[tokio::test]
    async fn command_source_reads_stdout_and_reports_failure() {
        let ok = SecretSource::Command(vec!["printf".into(), "s3cret\n".into()])
            .read()
            .await
            .unwrap();
        assert_eq!(ok.expose(), "s3cret");
        let err = SecretSource::Command(vec!["false".into()])
            .read()
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::CommandFailed { .. }), "{err}");
        let err = SecretSource::Command(vec![]).read().await.unwrap_err();
        assert!(matches!(err, SecretError::EmptyCommand));
    }

    #[tokio::test]
    async fn env_source_and_empty_value() {
        let err = SecretSource::Env("AKSCRED_TEST_SURELY_UNSET".into())
            .read()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("AKSCRED_TEST_SURELY_UNSET"));
        let err = SecretSource::Command(vec!["true".into()])
            .read()
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Empty(_)), "{err}");
    }
}
