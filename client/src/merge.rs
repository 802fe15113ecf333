//! `akscred kubeconfig --merge`: akscred's clusters, users and contexts into
//! a kubeconfig people already have, the way `az aks get-credentials` does.
//!
//! akscred's entries are exactly the ones in the daemon's kubeconfig (users
//! are `akscred-CLUSTER`, so they never collide with the user's own). Each
//! is added, or replaces the entry of the same name where it stands; every
//! other entry and top-level key is kept as the YAML layer reads it (see
//! `yaml`), and so is `current-context` unless `--set-current` says
//! otherwise (or there was none). The merge itself is a pure function of the
//! two documents; locking, reading and writing are around it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::output;
use crate::yaml::{self, Node, Value};

/// The lists whose entries are matched by `name`.
const LISTS: [&str; 3] = ["clusters", "users", "contexts"];
const CURRENT: &str = "current-context";

/// How long to wait for another writer's lock file to go away. kubectl holds
/// its lock for milliseconds.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Something wrong with a document, at a line when known; or with
/// `--set-current` (`argument`).
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
    pub argument: bool,
}

fn problem(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        message: message.into(),
        argument: false,
    }
}

/// What a merge did, for the confirmation line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    /// The new current context, when it changed.
    pub current: Option<String>,
}

/// Any scalar's text: names are compared as text whatever their style, as
/// kubectl reads them into strings.
fn text_of(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

fn name_of(entry: &Node) -> Option<&str> {
    entry.get("name").and_then(text_of)
}

/// The entries of the daemon's kubeconfig under `key`, with their names.
fn our_entries<'a>(ours: &'a Node, key: &str) -> Result<Vec<(&'a str, &'a Node)>, Problem> {
    match ours.get(key).map(|n| &n.value) {
        None => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|item| {
                name_of(item)
                    .map(|name| (name, item))
                    .ok_or_else(|| problem(item.line, format!("an entry of `{key}` has no name")))
            })
            .collect(),
        Some(_) => Err(problem(0, format!("`{key}` is not a list"))),
    }
}

/// Writes quoted scalars that would read the same plain, plain: the daemon
/// quotes every string, kubectl quotes only what needs it, and a merged file
/// should look like the rest of the file.
fn unquote(node: &mut Node) {
    match &mut node.value {
        Value::Scalar { text, quoted } => {
            if *quoted && node.tag.is_none() && yaml::is_plain_string(text) {
                *quoted = false;
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(unquote),
        Value::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            unquote(k);
            unquote(v);
        }),
    }
}

fn entries_mut(node: &mut Node) -> Option<&mut Vec<(Node, Node)>> {
    match &mut node.value {
        Value::Map(entries) => Some(entries),
        _ => None,
    }
}

/// Merges `ours` (the daemon's kubeconfig) into `existing` (None: no file,
/// or an empty one).
pub fn merge(
    existing: Option<Node>,
    ours: &Node,
    set_current: Option<&str>,
) -> Result<(Node, Changes), Problem> {
    let mut ours = ours.clone();
    unquote(&mut ours);
    let mut changes = Changes::default();
    let existing = existing.filter(|n| !n.is_null());
    let fresh = existing.is_none();
    let mut doc = existing.unwrap_or_else(|| Node {
        value: Value::Map(Vec::new()),
        tag: None,
        line: 0,
    });
    let kind = doc.kind();
    let line = doc.line;
    let Some(top) = entries_mut(&mut doc) else {
        return Err(problem(
            line,
            format!(
                "not a kubeconfig: the document is {kind}, not a mapping of apiVersion, clusters, users, contexts, ..."
            ),
        ));
    };
    if fresh {
        // A new file gets the daemon's header in the daemon's order.
        for key in ["apiVersion", "kind"] {
            if let Some(v) = ours.get(key) {
                top.push((Node::string(key), v.clone()));
            }
        }
    }
    for key in LISTS {
        let wanted = our_entries(&ours, key)?;
        let at = match top.iter().position(|(k, _)| text_of(k) == Some(key)) {
            Some(at) => at,
            None => {
                top.push((Node::string(key), Node::null()));
                top.len() - 1
            }
        };
        let value = &mut top[at].1;
        if value.is_null() {
            value.value = Value::Seq(Vec::new());
        }
        let (line, kind) = (value.line, value.kind());
        let Value::Seq(items) = &mut value.value else {
            return Err(problem(
                line,
                format!("not a kubeconfig: `{key}` is {kind}, not a list"),
            ));
        };
        for item in items.iter() {
            if !matches!(item.value, Value::Map(_)) {
                return Err(problem(
                    item.line,
                    format!(
                        "not a kubeconfig: an entry of `{key}` is {}, not a mapping with a name",
                        item.kind()
                    ),
                ));
            }
        }
        for (name, entry) in wanted {
            match items.iter().position(|i| name_of(i) == Some(name)) {
                Some(i) => {
                    if strip(&items[i]) != strip(entry) {
                        items[i] = entry.clone();
                        if key == "clusters" {
                            changes.updated.push(name.to_owned());
                        }
                    }
                }
                None => {
                    items.push(entry.clone());
                    if key == "clusters" {
                        changes.added.push(name.to_owned());
                    }
                }
            }
        }
        // A context or user that changed counts for its cluster's report
        // only through the cluster; that is detail enough.
    }

    let contexts: Vec<String> = match doc.get("contexts").map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(name_of)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let held = doc.get(CURRENT).and_then(text_of).unwrap_or("").to_owned();
    let wanted = match set_current {
        Some(name) => {
            if !contexts.iter().any(|c| c == name) {
                return Err(Problem {
                    argument: true,
                    ..problem(
                        0,
                        format!(
                            "no context `{name}` to make current; contexts: {}",
                            contexts.join(", ")
                        ),
                    )
                });
            }
            Some(name.to_owned())
        }
        // Nothing to keep: take the daemon's, as `az aks get-credentials`
        // would.
        None if held.is_empty() => ours
            .get(CURRENT)
            .and_then(text_of)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        None => None,
    };
    if let Some(name) = wanted
        && name != held
    {
        let value = Node::string(&name);
        let top = entries_mut(&mut doc).ok_or_else(|| problem(0, "not a mapping"))?;
        match top.iter_mut().find(|(k, _)| text_of(k) == Some(CURRENT)) {
            Some((_, v)) => *v = value,
            None => top.push((Node::string(CURRENT), value)),
        }
        changes.current = Some(name);
    }
    Ok((doc, changes))
}

impl Node {
    fn null() -> Node {
        Node {
            value: Value::Scalar {
                text: String::new(),
                quoted: false,
            },
            tag: None,
            line: 0,
        }
    }
}

/// A node without source lines, for comparing content.
fn strip(n: &Node) -> Node {
    let value = match &n.value {
        Value::Scalar { .. } => n.value.clone(),
        Value::Seq(items) => Value::Seq(items.iter().map(strip).collect()),
        Value::Map(e) => Value::Map(e.iter().map(|(k, v)| (strip(k), strip(v))).collect()),
    };
    Node {
        value,
        tag: n.tag.clone(),
        line: 0,
    }
}

/// The text to write, checked: read back, it must be the merged document.
/// A writer bug must never reach a user's file.
pub fn render(doc: &Node) -> Result<String, Problem> {
    let text = yaml::to_string(doc);
    match yaml::parse(&text) {
        Ok(Some(back)) if strip(&back) == strip(doc) => Ok(text),
        _ => Err(problem(
            0,
            "akscred cannot write this kubeconfig back without changing it (a bug: please report it)",
        )),
    }
}

/// `--file`, else the first file of `KUBECONFIG`, else `~/.kube/config`.
pub fn target(
    file: Option<PathBuf>,
    kubeconfig: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, Error> {
    if let Some(file) = file {
        return Ok(file);
    }
    if let Some(list) = kubeconfig
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".kube").join("config")),
        None => Err(Error::BadKubeconfig {
            message: "cannot find the kubeconfig: HOME and KUBECONFIG are not set".to_owned(),
            hint: "name it with --file PATH".to_owned(),
        }),
    }
}

/// kubectl's lock (client-go `lockFile`): `FILE.lock`, created exclusively,
/// removed when done. Sharing it keeps a concurrent `kubectl config ...`
/// from writing between our read and our rename.
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    pub fn acquire(file: &Path) -> Result<Lock, Error> {
        let mut name = file.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|error| Error::Output {
                    what: format!("cannot create {}", dir.display()),
                    error,
                })?;
        }
        let started = Instant::now();
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(Lock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if started.elapsed() >= LOCK_WAIT {
                        return Err(Error::Locked { lock: path });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(Error::Output {
                        what: format!("cannot create the lock file {}", path.display()),
                        error,
                    });
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The existing file's text and mode; None when there is no file.
pub fn read_existing(path: &Path) -> Result<Option<(String, u32)>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Error::Output {
                what: format!("cannot read {}", path.display()),
                error,
            });
        }
    };
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        broken(path, line, "it is not UTF-8 text")
    })?;
    Ok(Some((text, mode)))
}

pub fn broken(path: &Path, line: usize, message: &str) -> Error {
    let at = if line > 0 {
        format!("{}:{line}", path.display())
    } else {
        path.display().to_string()
    };
    Error::BadKubeconfig {
        message: format!("{at}: {message}; it was left as it is"),
        hint: format!(
            "fix or move {} (kubectl config view shows what kubectl makes of it), or merge into another file with --file PATH",
            path.display()
        ),
    }
}

/// Replaces the file, keeping `mode` (0600 for a new file).
pub fn write(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    output::replace_file(path, text.as_bytes(), mode)
}

/// A line diff in the unified format, three lines of context. Myers'
/// algorithm; past `MAX_EDITS` edits (a rewrite, not a merge) it shows the
/// whole file replaced rather than search further.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    const MAX_EDITS: usize = 2000;
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = myers(&a, &b, MAX_EDITS).unwrap_or_else(|| {
        let mut ops = vec![Op::Delete; a.len()];
        ops.extend(vec![Op::Insert; b.len()]);
        ops
    });
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Walk the ops, remembering positions, and cut them into hunks.
    let mut lines: Vec<(Op, usize, usize)> = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0, 0);
    for op in ops {
        lines.push((op, i, j));
        match op {
            Op::Equal => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&k| lines[k].0 != Op::Equal)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(lines.len());
        let hunk = &lines[start..end];
        let (a0, b0) = (hunk[0].1, hunk[0].2);
        let a_len = hunk.iter().filter(|l| l.0 != Op::Insert).count();
        let b_len = hunk.iter().filter(|l| l.0 != Op::Delete).count();
        let from = |s: usize, n: usize| if n == 0 { s } else { s + 1 };
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            from(a0, a_len),
            from(b0, b_len)
        ));
        for (op, i, j) in hunk {
            match op {
                Op::Equal => {
                    out.push(' ');
                    out.push_str(a[*i]);
                }
                Op::Delete => {
                    out.push('-');
                    out.push_str(a[*i]);
                }
                Op::Insert => {
                    out.push('+');
                    out.push_str(b[*j]);
                }
            }
            out.push('\n');
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    Delete,
    Insert,
}

/// The shortest edit script from `a` to `b` (Myers 1986), or None past
/// `max` edits. Each step keeps only its window of diagonals, `-d..=d`, so
/// the trace costs O(max²) at worst (a few MiB at `MAX_EDITS`).
fn myers(a: &[&str], b: &[&str], max: usize) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = max.min(a.len() + b.len()) as isize;
    // v[k + max + 1]: the furthest x reached on diagonal k.
    let at = |k: isize| (k + max + 1) as usize;
    let mut v = vec![0isize; 2 * max as usize + 3];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    for d in 0..=max {
        trace.push(v[at(-d)..=at(d)].to_vec());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                return Some(backtrack(&trace, n, m));
            }
            k += 2;
        }
    }
    None
}

/// Walks the trace back from the end; `trace[d]` holds diagonals `-d..=d`
/// as they were before step `d`.
fn backtrack(trace: &[Vec<isize>], n: isize, m: isize) -> Vec<Op> {
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let get = |k: isize| v[(k + d) as usize];
        let k = x - y;
        let (prev_x, prev_y) = if d == 0 {
            (0, 0)
        } else {
            let prev_k = if k == -d || (k != d && get(k - 1) < get(k + 1)) {
                k + 1
            } else {
                k - 1
            };
            let prev_x = get(prev_k);
            (prev_x, prev_x - prev_k)
        };
        while x > prev_x && y > prev_y {
            ops.push(Op::Equal);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            ops.push(if x == prev_x { Op::Insert } else { Op::Delete });
        }
        x = prev_x;
        y = prev_y;
    }
    ops.reverse();
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Option<Node> {
        yaml::parse(text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    const OURS: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: \"prod\"
  cluster:
    server: \"https://prod.example:443\"
    certificate-authority-data: LS0tCg==
users:
- name: \"akscred-prod\"
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: \"/usr/bin/akscred\"
      args:
      - token
      - \"prod\"
      interactiveMode: Never
      provideClusterInfo: false
contexts:
- name: \"prod\"
  context:
    cluster: \"prod\"
    user: \"akscred-prod\"
current-context: \"prod\"
";

    const THEIRS: &str = "\
apiVersion: v1
clusters:
- cluster:
    server: https://kind.local:6443
    insecure-skip-tls-verify: true
  name: kind
- cluster:
    server: https://old-prod.example:443
  name: prod
contexts:
- context:
    cluster: kind
    user: kind-admin
    namespace: \"0755\"
  name: kind
current-context: kind
kind: Config
preferences:
  colors: true
users:
- name: kind-admin
  user:
    token: abc
extensions:
- name: x
  extension: {answer: 42}
x-unknown: yes
";

    fn merged(existing: Option<&str>, set: Option<&str>) -> (String, Changes) {
        let ours = node(OURS).expect("ours");
        let existing = existing.and_then(node);
        let (doc, changes) = merge(existing, &ours, set).unwrap_or_else(|e| panic!("{e:?}"));
        (render(&doc).unwrap_or_else(|e| panic!("{e:?}")), changes)
    }

    #[test]
    fn new_file_is_the_daemons_kubeconfig() {
        let (text, changes) = merged(None, None);
        assert!(
            text.starts_with("apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n"),
            "{text}"
        );
        assert!(
            text.contains("    server: https://prod.example:443\n"),
            "{text}"
        );
        assert!(text.ends_with("current-context: prod\n"), "{text}");
        assert_eq!(changes.added, ["prod"]);
        assert_eq!(changes.current.as_deref(), Some("prod"));
    }

    #[test]
    fn others_are_kept_and_ours_replaced_in_place() {
        let (text, changes) = merged(Some(THEIRS), None);
        let doc = node(&text).expect("doc");
        let before = node(THEIRS).expect("before");
        for key in [
            "preferences",
            "extensions",
            "x-unknown",
            "apiVersion",
            "kind",
        ] {
            assert_eq!(doc.get(key).map(strip), before.get(key).map(strip), "{key}");
        }
        assert!(text.contains("x-unknown: yes\n"), "{text}");
        assert!(text.contains("namespace: \"0755\"\n"), "{text}");
        assert!(text.contains("current-context: kind\n"), "{text}");
        let Some(Value::Seq(clusters)) = doc.get("clusters").map(|n| &n.value) else {
            panic!("{text}")
        };
        let names: Vec<&str> = clusters.iter().filter_map(name_of).collect();
        assert_eq!(names, ["kind", "prod"]);
        assert_eq!(
            clusters[1]
                .get("cluster")
                .and_then(|c| c.get("server"))
                .and_then(text_of),
            Some("https://prod.example:443")
        );
        assert_eq!(changes.updated, ["prod"]);
        assert_eq!(changes.current, None);

        // Twice: nothing changes, byte for byte.
        let (again, changes) = merged(Some(&text), None);
        assert_eq!(again, text);
        assert_eq!(changes, Changes::default());
    }

    #[test]
    fn set_current() {
        let (text, changes) = merged(Some(THEIRS), Some("prod"));
        assert!(text.contains("current-context: prod\n"), "{text}");
        assert_eq!(changes.current.as_deref(), Some("prod"));
        let ours = node(OURS).expect("ours");
        let e = merge(node(THEIRS), &ours, Some("nope")).expect_err("unknown context");
        assert!(e.message.contains("no context `nope`"), "{e:?}");
        assert!(e.message.contains("kind, prod"), "{e:?}");
    }

    #[test]
    fn broken_files_are_refused_with_a_line() {
        let ours = node(OURS).expect("ours");
        for (text, line, what) in [
            ("- a\n- b\n", 1, "the document is a sequence"),
            ("apiVersion: v1\nclusters: 5\n", 2, "`clusters` is a scalar"),
            (
                "users:\n- just-a-string\n",
                2,
                "an entry of `users` is a scalar",
            ),
        ] {
            let e = merge(node(text), &ours, None).expect_err(text);
            assert_eq!(e.line, line, "{e:?}");
            assert!(e.message.contains(what), "{e:?}");
        }
        // Empty, null or comment-only files are new files.
        for text in ["", "# nothing\n", "~\n"] {
            assert!(merge(node(text), &ours, None).is_ok(), "{text}");
        }
    }

    #[test]
    fn diffs() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        assert_eq!(
            diff(old, new, "old", "new"),
            "--- old\n+++ new\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -8,3 +8,4 @@\n h\n i\n j\n+k\n"
        );
        assert_eq!(
            diff("", "x\n", "o", "n"),
            "--- o\n+++ n\n@@ -0,0 +1,1 @@\n+x\n"
        );
        assert_eq!(diff("x\n", "x\n", "o", "n"), "--- o\n+++ n\n");
    }

    #[test]
    fn diffs_rebuild_the_new_text() {
        // Apply the +/space lines of every hunk to check the script is
        // consistent, on texts with many repeats (the hard case).
        let old: String = (0..300).map(|i| format!("{}\n", i % 7)).collect();
        let new: String = (0..280).map(|i| format!("{}\n", (i * 3) % 5)).collect();
        let d = diff(&old, &new, "o", "n");
        let minus = d
            .lines()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .count();
        let plus = d
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let a: Vec<&str> = old.lines().collect();
        let b: Vec<&str> = new.lines().collect();
        let ops = myers(&a, &b, 2000).unwrap_or_default();
        let equal = ops.iter().filter(|o| **o == Op::Equal).count();
        assert_eq!(equal + minus, a.len());
        assert_eq!(equal + plus, b.len());
        let mut rebuilt = Vec::new();
        let (mut i, mut j) = (0, 0);
        for op in ops {
            match op {
                Op::Equal => {
                    assert_eq!(a[i], b[j]);
                    rebuilt.push(a[i]);
                    i += 1;
                    j += 1;
                }
                Op::Delete => i += 1,
                Op::Insert => {
                    rebuilt.push(b[j]);
                    j += 1;
                }
            }
        }
        assert_eq!(rebuilt, b);
        // Past the edit bound: the whole file, replaced.
        assert!(myers(&a, &b, 3).is_none());
    }

    #[test]
    fn targets() {
        let t = |file: Option<&str>, kc: Option<&str>, home: Option<&str>| {
            target(
                file.map(PathBuf::from),
                kc.map(Into::into),
                home.map(Into::into),
            )
            .ok()
        };
        assert_eq!(t(Some("/f"), Some("/k"), Some("/h")), Some("/f".into()));
        assert_eq!(t(None, Some(":/a:/b"), Some("/h")), Some("/a".into()));
        assert_eq!(
            t(None, Some(""), Some("/h")),
            Some("/h/.kube/config".into())
        );
        assert_eq!(t(None, None, None), None);
    }
}
