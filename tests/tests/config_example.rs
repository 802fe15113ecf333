//! `config.example.toml` is the configuration's documentation: akscredd
//! must accept it, and it must mention every key akscredd accepts.
//!
//! The keys are read from the parser's own source (the `Raw*` structs of
//! daemon/src/config.rs, whose `deny_unknown_fields` makes them the
//! complete list, and the password source tables of secret.rs), so a key
//! added there without a word in the example fails here.

mod support;

use std::process::Command;

/// Field names of every `struct Raw...` in `source`, by struct.
fn raw_struct_fields(source: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("struct Raw") else {
            continue;
        };
        let name = format!("Raw{}", rest.trim_end_matches(" {").trim());
        let mut fields = Vec::new();
        let mut rename: Option<String> = None;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == "}" {
                break;
            }
            if let Some(attr) = line.strip_prefix("#[serde(")
                && let Some(at) = attr.find("rename = \"")
            {
                let tail = &attr[at + "rename = \"".len()..];
                rename = tail.split('"').next().map(str::to_owned);
            }
            if line.starts_with("//") || line.starts_with('#') {
                continue;
            }
            if let Some((field, _)) = line.split_once(':') {
                let field = field.trim().trim_start_matches("pub ").trim();
                if !field.is_empty() && field.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    fields.push(rename.take().unwrap_or_else(|| field.to_owned()));
                }
            }
        }
        out.push((name, fields));
    }
    out
}

/// The variants of `enum SourceTable` in snake case: `file`, `env`, ...
fn source_table_keys(source: &str) -> Vec<String> {
    let body = source
        .split("enum SourceTable {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("secret.rs has `enum SourceTable`");
    body.lines()
        .filter_map(|l| l.trim().split('(').next())
        .filter(|v| !v.is_empty() && !v.starts_with("//"))
        .map(|v| {
            let mut snake = String::new();
            for (i, c) in v.chars().enumerate() {
                if c.is_ascii_uppercase() {
                    if i > 0 {
                        snake.push('_');
                    }
                    snake.push(c.to_ascii_lowercase());
                } else {
                    snake.push(c);
                }
            }
            snake
        })
        .collect()
}

/// `key = ` at the start of a line or after `{ ` / `# `, commented or not;
/// a table name as `[key]` or `[key.`.
fn documented(example: &str, key: &str) -> bool {
    example.lines().any(|line| {
        let line = line.trim_start_matches(['#', ' ']);
        line.starts_with(&format!("{key} ="))
            || line.starts_with(&format!("[{key}]"))
            || line.starts_with(&format!("[{key}."))
            || line.contains(&format!("{{ {key} ="))
    })
}

#[test]
fn every_accepted_key_is_in_the_example() {
    let root = support::repo();
    let config = std::fs::read_to_string(root.join("daemon/src/config.rs")).expect("config.rs");
    let secret = std::fs::read_to_string(root.join("daemon/src/secret.rs")).expect("secret.rs");
    let example =
        std::fs::read_to_string(root.join("config.example.toml")).expect("config.example.toml");
    let structs = raw_struct_fields(&config);
    let names: Vec<&str> = structs.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in ["RawConfig", "RawDaemon", "RawIdentity", "RawCluster"] {
        assert!(
            names.contains(&wanted),
            "no {wanted} in config.rs: {names:?}"
        );
    }
    let mut missing = Vec::new();
    let mut count = 0;
    for (name, fields) in &structs {
        assert!(!fields.is_empty(), "{name} has no fields?");
        for field in fields {
            count += 1;
            if !documented(&example, field) {
                missing.push(format!("{name}.{field}"));
            }
        }
    }
    let sources = source_table_keys(&secret);
    assert!(
        sources.contains(&"systemd_credential".to_owned()),
        "{sources:?}"
    );
    for key in &sources {
        count += 1;
        if !documented(&example, key) {
            missing.push(format!("password source `{key}`"));
        }
    }
    assert!(
        count > 30,
        "only {count} keys found: is the parser's layout different?"
    );
    assert!(
        missing.is_empty(),
        "config.example.toml does not document: {}",
        missing.join(", ")
    );
}

#[test]
fn the_example_passes_check_config() {
    let out = Command::new(support::bin("akscredd"))
        .args(["check-config", "--config"])
        .arg(support::repo().join("config.example.toml"))
        .output()
        .expect("akscredd runs");
    assert!(
        out.status.success(),
        "akscredd check-config --config config.example.toml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
