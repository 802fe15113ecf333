//! Just enough YAML to rewrite a kubeconfig without changing what any other
//! program reads in it.
//!
//! Parsing is granit-parser's (the event parser under serde-saphyr, which the
//! daemon uses): its events keep each scalar's text *and* style, and their
//! positions give line numbers for errors. A typed YAML library would resolve
//! `yes`, `0755` or `1e3` to a bool or a number and write it back as
//! something else, which a YAML 1.1 reader (kubectl's) may read differently.
//! Here a plain scalar is written back with its exact text, and every other
//! scalar (quoted, literal, folded) as a double-quoted string with the same
//! value; tags are kept, aliases expanded. Comments are dropped, as
//! `kubectl config` drops them.
//!
//! The writer emits block style the way kubectl does (sequence items at the
//! indentation of their key), so a file kubectl wrote changes little.

use std::fmt::Write as _;

use granit_parser::{Event, Parser, ScalarStyle, Tag};

/// Nodes in one document, aliases counted once per use: bounds what an
/// alias bomb can make the merge build.
const MAX_NODES: usize = 1_000_000;
/// Nesting depth accepted (the writer recurses).
const MAX_DEPTH: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// As written back: `!!binary`, `!local`, `!<uri>`.
    pub tag: Option<String>,
    /// 1-based line of the node in the source (0 for built nodes).
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `quoted`: written with quotes or as a block scalar, so a string
    /// whatever it looks like; else plain, and a reader resolves it.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl Node {
    pub fn string(text: &str) -> Node {
        // A plain scalar when a reader would take it for the same string.
        Node {
            value: Value::Scalar {
                text: text.to_owned(),
                quoted: !is_plain_string(text),
            },
            tag: None,
            line: 0,
        }
    }

    /// The text of a scalar that every reader takes as a string: quoted, or
    /// plain and not a null, bool or number.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, quoted: true } => Some(text),
            Value::Scalar {
                text,
                quoted: false,
            } if is_plain_string(text) => Some(text),
            _ => None,
        }
    }

    /// A plain empty scalar, `~` or `null`: what a missing value reads as.
    pub fn is_null(&self) -> bool {
        self.tag.is_none()
            && matches!(&self.value, Value::Scalar { text, quoted: false }
                if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value of key `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a sequence",
            Value::Map(_) => "a mapping",
        }
    }
}

/// YAML 1.1 and 1.2 words that resolve to null or a bool, in any case
/// kubectl's YAML 1.1 reader would take.
const KEYWORDS: &[&str] = &[
    "null", "~", "true", "false", "yes", "no", "on", "off", "y", "n",
];

/// True when `text`, written plain, reads back as this very string in both
/// YAML 1.1 and 1.2: no keyword, nothing number-like, no indicator or
/// whitespace that would change the parse. Conservative: anything doubtful
/// is quoted.
pub fn is_plain_string(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(text)) {
        return false;
    }
    // Numbers in any base or notation, including YAML 1.1 sexagesimal
    // (`1:30`) and `.inf`/`.nan`: anything that starts like a number.
    // and what starts with an indicator (`-`, `@`, `=`, ...).
    if first.is_ascii_digit() || !(first.is_ascii_alphabetic() || matches!(first, '/' | '_' | '$'))
    {
        return false;
    }
    // `:` is only an indicator before a space or at the end; base64 (CA
    // data) needs `+`, `/` and `=`.
    !text.ends_with(':')
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | '@' | '$' | ':' | '+' | '=')
        })
}

pub fn parse(text: &str) -> Result<Option<Node>, ParseError> {
    let mut builder = Builder {
        anchors: Vec::new(),
        nodes: 0,
    };
    let mut events = Parser::new_from_str(text);
    let mut documents: Vec<Node> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    while let Some(event) = events.next_event() {
        let (event, span) = event.map_err(|e| ParseError {
            line: e.marker().line(),
            message: e.info(),
        })?;
        let line = span.start.line();
        let is_map = matches!(event, Event::MappingStart(..));
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(..) => {
                if !documents.is_empty() {
                    return Err(ParseError {
                        line,
                        message: "a second YAML document; a kubeconfig is one".to_owned(),
                    });
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let node = Node {
                    value: Value::Scalar {
                        text: text.into_owned(),
                        quoted: style != ScalarStyle::Plain,
                    },
                    tag: tag.map(|t| tag_text(&t)),
                    line,
                };
                builder.count(line)?;
                builder.anchor(anchor, &node);
                node
            }
            Event::Alias(id) => {
                let node = builder.alias(id, line)?;
                builder.count_tree(&node, line)?;
                node
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError {
                        line,
                        message: format!("nested deeper than {MAX_DEPTH} levels"),
                    });
                }
                builder.count(line)?;
                stack.push(Frame {
                    node: Node {
                        value: if is_map {
                            Value::Map(Vec::new())
                        } else {
                            Value::Seq(Vec::new())
                        },
                        tag: tag.map(|t| tag_text(&t)),
                        line,
                    },
                    anchor,
                    key: None,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else {
                    continue;
                };
                builder.anchor(frame.anchor, &frame.node);
                frame.node
            }
            // Comments and anchor metadata carry no data.
            _ => continue,
        };
        match stack.last_mut() {
            None => documents.push(node),
            Some(frame) => match (&mut frame.node.value, frame.key.take()) {
                (Value::Seq(items), _) => items.push(node),
                (Value::Map(entries), Some(key)) => entries.push((key, node)),
                (Value::Map(_), None) => {
                    // The writer has no syntax for these, and kubeconfigs
                    // have none: refuse rather than lose them.
                    match &node.value {
                        Value::Scalar { text, quoted } if *quoted || !text.is_empty() => {}
                        _ => {
                            return Err(ParseError {
                                line: node.line,
                                message: "a mapping key that is empty or not a scalar".to_owned(),
                            });
                        }
                    }
                    frame.key = Some(node)
                }
                (Value::Scalar { .. }, _) => {}
            },
        }
    }
    Ok(documents.pop())
}

struct Frame {
    node: Node,
    anchor: usize,
    /// A mapping's key waiting for its value.
    key: Option<Node>,
}

struct Builder {
    anchors: Vec<(usize, Node)>,
    nodes: usize,
}

impl Builder {
    fn count(&mut self, line: usize) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ParseError {
                line,
                message: format!("more than {MAX_NODES} nodes (aliases expanded)"),
            });
        }
        Ok(())
    }

    fn count_tree(&mut self, node: &Node, line: usize) -> Result<(), ParseError> {
        self.count(line)?;
        match &node.value {
            Value::Scalar { .. } => Ok(()),
            Value::Seq(items) => items.iter().try_for_each(|n| self.count_tree(n, line)),
            Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
                self.count_tree(k, line)?;
                self.count_tree(v, line)
            }),
        }
    }

    fn anchor(&mut self, id: usize, node: &Node) {
        if id != 0 {
            self.anchors.push((id, node.clone()));
        }
    }

    fn alias(&self, id: usize, line: usize) -> Result<Node, ParseError> {
        self.anchors
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| Node { line, ..n.clone() })
            .ok_or(ParseError {
                line,
                message: "an alias to an anchor not (yet) defined".to_owned(),
            })
    }
}

const CORE: &str = "tag:yaml.org,2002:";

fn tag_text(tag: &Tag) -> String {
    let uri = format!("{}{}", tag.handle(), tag.suffix());
    if let Some(core) = uri.strip_prefix(CORE) {
        format!("!!{core}")
    } else if tag.handle() == "!" {
        // A local tag, or `!` alone (non-specific: a plain scalar that is a
        // string).
        format!("!{}", tag.suffix())
    } else {
        format!("!<{uri}>")
    }
}

/// The document as block-style YAML, ending in a newline.
pub fn to_string(root: &Node) -> String {
    let mut out = String::new();
    if is_block(root)
        && let Some(tag) = &root.tag
    {
        out.push_str(tag);
        out.push('\n');
    }
    match &root.value {
        Value::Map(entries) if !entries.is_empty() => write_entries(&mut out, entries, 0),
        Value::Seq(items) if !items.is_empty() => write_items(&mut out, items, 0),
        _ => {
            write_inline(&mut out, root);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn is_block(node: &Node) -> bool {
    match &node.value {
        Value::Map(e) => !e.is_empty(),
        Value::Seq(i) => !i.is_empty(),
        Value::Scalar { .. } => false,
    }
}

/// A scalar, an empty collection (`{}`, `[]`), with its tag.
fn write_inline(out: &mut String, node: &Node) {
    let mut tagged = false;
    if let Some(tag) = &node.tag {
        out.push_str(tag);
        tagged = true;
    }
    let text = match &node.value {
        Value::Map(_) => "{}".to_owned(),
        Value::Seq(_) => "[]".to_owned(),
        Value::Scalar { text, quoted } => {
            if !*quoted && plain_ok(text) {
                text.clone()
            } else if !*quoted && text.is_empty() {
                // An empty plain value (`key:`) is null; keep it empty.
                String::new()
            } else {
                double_quoted(text)
            }
        }
    };
    if tagged && !text.is_empty() {
        out.push(' ');
    }
    out.push_str(&text);
}

/// Whether plain text read from a source can be written plain again on one
/// line: the parser accepted it as plain, so only what folding or context
/// could change matters.
fn plain_ok(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with([' ', '\t'])
        && !text.ends_with([' ', '\t'])
        && !text.contains(['\n', '\r'])
        && !text.contains(": ")
        && !text.contains(":\t")
        && !text.contains(" #")
        && !text.contains("\t#")
        && !text.ends_with(':')
        && !text.chars().any(|c| c.is_control() || is_special_space(c))
        && !text.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        || is_safe_dash(text)
}

/// `-5`, `-x`: a leading `-` is only an indicator when a space follows.
fn is_safe_dash(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next() == Some('-')
        && chars.next().is_some_and(|c| !c.is_whitespace())
        && plain_ok(&text[1..])
}

fn is_special_space(c: char) -> bool {
    matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// A YAML double-quoted scalar (JSON-style escapes, which YAML 1.1 and 1.2
/// both read).
pub fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_special_space(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key: a scalar (`parse` refuses others). An implicit key may not be
/// longer than 1024 characters; a longer one can only be a string.
fn write_key(out: &mut String, key: &Node) {
    match &key.value {
        Value::Scalar { text, .. } if text.chars().count() > 1000 => {
            if let Some(tag) = &key.tag {
                out.push_str(tag);
                out.push(' ');
            }
            out.push_str(&double_quoted(text));
        }
        _ => write_inline(out, key),
    }
}

fn write_entries(out: &mut String, entries: &[(Node, Node)], at: usize) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            indent(out, at);
        }
        write_key(out, key);
        out.push(':');
        write_value(out, value, at, true);
    }
}

/// After `key:` (in a mapping) or `- ` (in a sequence).
fn write_value(out: &mut String, value: &Node, at: usize, after_key: bool) {
    if !is_block(value) {
        let mut inline = String::new();
        write_inline(&mut inline, value);
        if !inline.is_empty() {
            out.push(' ');
            out.push_str(&inline);
        }
        out.push('\n');
        return;
    }
    if let Some(tag) = &value.tag {
        out.push(' ');
        out.push_str(tag);
    }
    out.push('\n');
    match &value.value {
        Value::Map(entries) => {
            indent(out, at + 2);
            write_entries(out, entries, at + 2);
        }
        Value::Seq(items) => {
            // kubectl's style: a key's items at the key's indentation.
            let item_at = if after_key { at } else { at + 2 };
            indent(out, item_at);
            write_items(out, items, item_at);
        }
        Value::Scalar { .. } => {}
    }
}

fn write_items(out: &mut String, items: &[Node], at: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            indent(out, at);
        }
        out.push('-');
        match &item.value {
            // The first entry on the dash's line, the others under it.
            Value::Map(entries) if !entries.is_empty() && item.tag.is_none() => {
                out.push(' ');
                write_entries(out, entries, at + 2);
            }
            Value::Seq(inner) if !inner.is_empty() && item.tag.is_none() => {
                out.push(' ');
                write_items(out, inner, at + 2);
            }
            _ => write_value(out, item, at, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let node = parse(text)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("empty"));
        let out = to_string(&node);
        let again = parse(&out)
            .unwrap_or_else(|e| panic!("{e:?} in\n{out}"))
            .unwrap_or_else(|| panic!("empty"));
        assert_eq!(strip_lines(&again), strip_lines(&node), "{out}");
        assert_eq!(to_string(&again), out, "not idempotent");
        out
    }

    fn strip_lines(n: &Node) -> Node {
        let value = match &n.value {
            Value::Scalar { .. } => n.value.clone(),
            Value::Seq(items) => Value::Seq(items.iter().map(strip_lines).collect()),
            Value::Map(e) => Value::Map(
                e.iter()
                    .map(|(k, v)| (strip_lines(k), strip_lines(v)))
                    .collect(),
            ),
        };
        Node {
            value,
            tag: n.tag.clone(),
            line: 0,
        }
    }

    #[test]
    fn kubectl_style_is_kept() {
        let text = "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://prod.example:443
  name: prod
contexts:
- context:
    cluster: prod
    namespace: \"123\"
    user: alice
  name: prod
current-context: prod
kind: Config
preferences: {}
users:
- name: alice
  user:
    exec:
      args:
      - token
      - prod
      command: /usr/bin/akscred
      env: null
";
        assert_eq!(round_trip(text), text);
    }

    #[test]
    fn scalars_keep_their_meaning() {
        let text = "\
a: yes
b: 'yes'
c: 0777
d: 1e3
e: ~
f:
g: \"multi\\nline\"
h: |
  literal
  block
i: >-
  folded
  text
j: !!binary aGVsbG8=
k: !custom {x: 1}
l: [1, \"two\", three]
m: &anchor {p: q}
n: *anchor
o: -5
p: key:value
q: \"\\u2028\"
r: 'it''s'
";
        let out = round_trip(text);
        assert!(out.contains("a: yes\n"), "{out}");
        assert!(out.contains("b: \"yes\"\n"), "{out}");
        assert!(out.contains("c: 0777\n"), "{out}");
        assert!(out.contains("d: 1e3\n"), "{out}");
        assert!(out.contains("e: ~\n"), "{out}");
        // An empty value reads as null, and the parser says so with `~`.
        assert!(out.contains("f: ~\n"), "{out}");
        assert!(out.contains("h: \"literal\\nblock\\n\"\n"), "{out}");
        assert!(out.contains("i: \"folded text\"\n"), "{out}");
        assert!(out.contains("j: !!binary aGVsbG8=\n"), "{out}");
        assert!(out.contains("k: !custom\n  x: 1\n"), "{out}");
        assert!(out.contains("l:\n- 1\n- \"two\"\n- three\n"), "{out}");
        assert!(out.contains("n:\n  p: q\n"), "{out}");
        assert!(out.contains("o: -5\n"), "{out}");
        assert!(out.contains("q: \"\\u2028\"\n"), "{out}");
        assert!(out.contains("r: \"it's\"\n"), "{out}");
    }

    #[test]
    fn nested_sequences_and_empty_collections() {
        let out = round_trip("a:\n- - 1\n  - 2\n- []\n- {}\n- - x: 1\n    y: 2\nb: []\n");
        assert_eq!(
            out,
            "a:\n- - 1\n  - 2\n- []\n- {}\n- - x: 1\n    y: 2\nb: []\n"
        );
    }

    #[test]
    fn errors_have_lines() {
        let e = parse("a: 1\nb: [\n").expect_err("unterminated");
        assert!(e.line >= 2, "{e:?}");
        let e = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(e.line, 2);
        assert_eq!(parse("").ok(), Some(None));
        assert_eq!(parse("# only a comment\n").ok(), Some(None));
    }

    #[test]
    fn plain_strings() {
        for s in [
            "prod",
            "aks-prod_1.west",
            "alice@contoso.com",
            "/usr/bin/x",
            "https://x.example:443",
            "LS0tLS1CRUdJTg+/==",
            "a:b",
        ] {
            assert!(is_plain_string(s), "{s}");
        }
        for s in [
            "", "yes", "No", "ON", "y", "null", "~", "123", "0x1f", "1e3", ".inf", "-x", "a b",
            "a:", "1:30", "true", "=",
        ] {
            assert!(!is_plain_string(s), "{s}");
        }
        assert_eq!(Node::string("yes").as_str(), Some("yes"));
        assert_eq!(to_string(&Node::string("yes")), "\"yes\"\n");
    }
}
