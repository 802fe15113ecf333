//! A small, bounded, namespace-aware XML tree for the federation documents
//! (MEX, RSTR, SOAP faults), built on quick-xml's pull parser.
//!
//! Namespaces are resolved, not matched by prefix: real MEX documents rebind
//! `sp` to the 2005 security-policy namespace inside some policies, which is
//! what trips regex-based parsers.
//!
//! Everything here reads documents from servers we do not control:
//! - A `DOCTYPE` is refused outright, so a document cannot define an entity,
//!   let alone an external one (XXE) or a recursive one (billion laughs).
//!   Only the five predefined entities and character references resolve.
//! - Depth, element count and namespace declarations are capped; the caller
//!   caps the size of the bytes.
//! - Nothing panics; every problem is an [`XmlError`] with its position.
//!
//! Elements the caller marks opaque (a WS-Trust `RequestedSecurityToken`)
//! keep only the names and byte spans of their direct children: the signed
//! assertion inside is taken from the input byte for byte, and its text is
//! never copied into the tree.

use std::ops::Range;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{QName, ResolveResult};
use quick_xml::reader::NsReader;

/// Real documents nest about 15 deep.
pub const MAX_DEPTH: usize = 64;
/// Real MEX documents hold about 600 elements.
pub const MAX_ELEMENTS: usize = 20_000;
/// Real MEX documents declare about 70 namespaces. Capped because each
/// name lookup walks the declarations in scope.
pub const MAX_NAMESPACE_DECLARATIONS: usize = 2_000;

/// Upstream text quoted in messages is cut to this many characters.
const MAX_QUOTE: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at line {line}, column {column}")]
pub struct XmlError {
    pub reason: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in bytes.
    pub column: usize,
    /// 0-based byte offset in the input.
    pub offset: usize,
}

impl XmlError {
    fn at(input: &[u8], offset: usize, reason: impl Into<String>) -> XmlError {
        let offset = offset.min(input.len());
        let before = &input[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = offset
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        XmlError {
            reason: reason.into(),
            line,
            column,
            offset,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: Option<String>,
    pub local: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The namespace URI, resolved.
    pub ns: Option<String>,
    pub local: String,
    /// Without namespace declarations.
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// The element's own character data (text, CDATA, references), in
    /// order; the text of children is not included.
    pub text: String,
    /// Where the whole element (start tag to end tag) is in the input.
    pub span: Range<usize>,
}

impl Element {
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.local == local && self.ns.as_deref() == Some(ns)
    }

    /// Direct children with this name.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, local))
    }

    pub fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// Every element reached by following `path` (namespace, local name)
    /// down from this one.
    pub fn select<'a>(&'a self, path: &[(&str, &str)]) -> Vec<&'a Element> {
        let mut current = vec![self];
        for (ns, local) in path {
            current = current
                .into_iter()
                .flat_map(|e| e.children.iter().filter(|c| c.is(ns, local)))
                .collect();
        }
        current
    }

    /// An attribute without a namespace (`name="..."`).
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.local == local)
            .map(|a| a.value.as_str())
    }

    pub fn attr_ns(&self, ns: &str, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.as_deref() == Some(ns) && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// The first element, in document order, this one included, for which
    /// `pred` holds.
    pub fn find(&self, pred: impl Fn(&Element) -> bool) -> Option<&Element> {
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            if pred(e) {
                return Some(e);
            }
            stack.extend(e.children.iter().rev());
        }
        None
    }

    /// `prefix:name` as people know it, for messages.
    pub fn display_name(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
}

/// Cuts upstream text for a message: at most [`MAX_QUOTE`] characters,
/// control characters replaced.
pub fn quote(s: &str) -> String {
    let mut out: String = s
        .trim()
        .chars()
        .take(MAX_QUOTE)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.trim().chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything kept.
    Full,
    /// Inside an opaque element: children are kept as names and spans only.
    Opaque,
    /// A direct child of an opaque element: name and span only.
    Shallow,
    /// Deeper inside an opaque element: nothing kept.
    Skip,
}

struct Frame {
    element: Element,
    mode: Mode,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses `input` (UTF-8, an optional byte-order mark) into its root element.
/// `opaque(ns, local)` marks elements whose content is kept as spans only.
pub fn parse(
    input: &[u8],
    opaque: impl Fn(Option<&str>, &str) -> bool,
) -> Result<Element, XmlError> {
    let skip = if input.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    let body = &input[skip..];
    let error = |offset: usize, reason: String| XmlError::at(input, offset + skip, reason);

    let mut reader = NsReader::from_reader(body);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.allow_dangling_amp = false;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    let mut declarations = 0usize;

    loop {
        let before = pos(reader.buffer_position());
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(e) => {
                return Err(error(pos(reader.error_position()), quote(&e.to_string())));
            }
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let empty = matches!(event, Event::Empty(_));
                if stack.is_empty() && root.is_some() {
                    return Err(error(before, "a second root element".into()));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(error(
                        before,
                        format!("elements nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(error(before, format!("more than {MAX_ELEMENTS} elements")));
                }
                let parent_mode = stack.last().map_or(Mode::Full, |f| f.mode);
                let (ns, local) = resolve(reader.resolve_element(start.name()))
                    .map_err(|reason| error(before, reason))?;
                declarations += count_declarations(start).map_err(|r| error(before, r))?;
                if declarations > MAX_NAMESPACE_DECLARATIONS {
                    return Err(error(
                        before,
                        format!("more than {MAX_NAMESPACE_DECLARATIONS} namespace declarations"),
                    ));
                }
                let mode = match parent_mode {
                    Mode::Full if opaque(ns.as_deref(), &local) => Mode::Opaque,
                    Mode::Full => Mode::Full,
                    Mode::Opaque => Mode::Shallow,
                    Mode::Shallow | Mode::Skip => Mode::Skip,
                };
                // Attributes are checked at every level (a malformed one is a
                // malformed document) but kept only where the tree is kept.
                let attrs = attributes(&reader, start).map_err(|r| error(before, r))?;
                let element = Element {
                    ns,
                    local,
                    attrs: if matches!(mode, Mode::Full | Mode::Opaque) {
                        attrs
                    } else {
                        Vec::new()
                    },
                    children: Vec::new(),
                    text: String::new(),
                    span: before + skip..before + skip,
                };
                stack.push(Frame { element, mode });
                if empty {
                    close(&mut stack, &mut root, pos(reader.buffer_position()) + skip);
                }
            }
            Event::End(_) => {
                close(&mut stack, &mut root, pos(reader.buffer_position()) + skip);
            }
            Event::Text(text) => {
                let text = text
                    .decode()
                    .map_err(|e| error(before, format!("text is not UTF-8: {e}")))?;
                push_text(&mut stack, &text).map_err(|r| error(before, r))?;
            }
            Event::CData(data) => {
                let data = data
                    .decode()
                    .map_err(|e| error(before, format!("CDATA is not UTF-8: {e}")))?;
                push_text(&mut stack, &data).map_err(|r| error(before, r))?;
            }
            Event::GeneralRef(reference) => {
                let resolved: String = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference
                            .decode()
                            .map_err(|e| error(before, format!("reference is not UTF-8: {e}")))?;
                        match resolve_predefined_entity(&name) {
                            Some(s) => s.to_string(),
                            None => {
                                return Err(error(
                                    before,
                                    format!(
                                        "undefined entity &{};: only the predefined XML entities are accepted",
                                        quote(&name)
                                    ),
                                ));
                            }
                        }
                    }
                    Err(e) => {
                        return Err(error(
                            before,
                            format!("bad character reference: {}", quote(&e.to_string())),
                        ));
                    }
                };
                push_text(&mut stack, &resolved).map_err(|r| error(before, r))?;
            }
            Event::DocType(_) => {
                return Err(error(
                    before,
                    "a DOCTYPE declaration is not accepted (no DTDs, no entity definitions)".into(),
                ));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => {
                if let Some(open) = stack.last() {
                    return Err(error(
                        body.len(),
                        format!(
                            "the document ends inside the element <{}>",
                            quote(&open.element.local)
                        ),
                    ));
                }
                return root.ok_or_else(|| error(0, "the document has no root element".into()));
            }
        }
    }
}

fn pos(p: u64) -> usize {
    usize::try_from(p).unwrap_or(usize::MAX)
}

fn resolve(
    (result, local): (ResolveResult<'_>, quick_xml::name::LocalName<'_>),
) -> Result<(Option<String>, String), String> {
    let local = std::str::from_utf8(local.as_ref())
        .map_err(|_| "a name is not UTF-8".to_string())?
        .to_string();
    let ns = match result {
        ResolveResult::Bound(ns) => Some(
            std::str::from_utf8(ns.as_ref())
                .map_err(|_| "a namespace is not UTF-8".to_string())?
                .to_string(),
        ),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(prefix) => {
            return Err(format!(
                "the namespace prefix {}: is not declared",
                quote(&String::from_utf8_lossy(&prefix))
            ));
        }
    };
    Ok((ns, local))
}

fn is_declaration(key: QName<'_>) -> bool {
    let k = key.as_ref();
    k == b"xmlns" || k.starts_with(b"xmlns:")
}

fn count_declarations(start: &BytesStart<'_>) -> Result<usize, String> {
    let mut n = 0;
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {}", quote(&e.to_string())))?;
        if is_declaration(attr.key) {
            n += 1;
        }
    }
    Ok(n)
}

fn attributes(reader: &NsReader<&[u8]>, start: &BytesStart<'_>) -> Result<Vec<Attr>, String> {
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {}", quote(&e.to_string())))?;
        if is_declaration(attr.key) {
            continue;
        }
        let (ns, local) = resolve(reader.resolve_attribute(attr.key))?;
        let value = attr
            .decode_and_unescape_value(reader.decoder())
            .map_err(|e| format!("malformed attribute value: {}", quote(&e.to_string())))?
            .into_owned();
        out.push(Attr { ns, local, value });
    }
    Ok(out)
}

fn push_text(stack: &mut [Frame], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(frame) => {
            if frame.mode == Mode::Full {
                frame.element.text.push_str(text);
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// Ends the innermost open element at `end` and hangs it under its parent
/// (or makes it the root).
fn close(stack: &mut Vec<Frame>, root: &mut Option<Element>, end: usize) {
    // quick-xml pairs end tags with start tags, so there is a frame; an
    // unpaired end tag is an error before we get here.
    let Some(mut frame) = stack.pop() else {
        return;
    };
    frame.element.span.end = end;
    match stack.last_mut() {
        Some(parent) => {
            if frame.mode != Mode::Skip {
                parent.element.children.push(frame.element);
            }
        }
        None => *root = Some(frame.element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(input: &str) -> Result<Element, XmlError> {
        parse(input.as_bytes(), |_, _| false)
    }

    #[test]
    fn namespaces_resolve_through_rebinding() {
        let doc = r#"<a:root xmlns:a="urn:a" xmlns:p="urn:one"><p:x/><p:x xmlns:p="urn:two" p:k="v" k="w">t&amp;&#x41;<![CDATA[<c>]]></p:x></a:root>"#;
        let root = plain(doc).unwrap();
        assert!(root.is("urn:a", "root"));
        assert!(root.children[0].is("urn:one", "x"));
        let second = &root.children[1];
        assert!(second.is("urn:two", "x"));
        assert_eq!(second.attr_ns("urn:two", "k"), Some("v"));
        assert_eq!(second.attr("k"), Some("w"));
        assert_eq!(second.text, "t&A<c>");
        assert_eq!(
            &doc[second.span.clone()],
            &doc[doc.find("<p:x xmlns").unwrap()..doc.len() - "</a:root>".len()]
        );
    }

    #[test]
    fn opaque_elements_keep_spans_not_text() {
        let doc = "<r><o><inner a=\"1\">secret<deeper>more</deeper></inner>tail</o><t>kept</t></r>";
        let root = parse(doc.as_bytes(), |_, local| local == "o").unwrap();
        let o = &root.children[0];
        assert_eq!(o.text, "");
        assert_eq!(o.children.len(), 1);
        let inner = &o.children[0];
        assert!(inner.children.is_empty() && inner.text.is_empty() && inner.attrs.is_empty());
        assert_eq!(
            &doc[inner.span.clone()],
            "<inner a=\"1\">secret<deeper>more</deeper></inner>"
        );
        assert_eq!(root.children[1].text, "kept");
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_spans_stay_absolute() {
        let doc = b"\xEF\xBB\xBF<?xml version=\"1.0\"?><r><c/></r>";
        let root = parse(doc, |_, _| false).unwrap();
        assert_eq!(&doc[root.children[0].span.clone()], b"<c/>");
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        let e = plain(bomb).unwrap_err();
        assert!(e.reason.contains("DOCTYPE"), "{e}");
        let xxe = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert!(plain(xxe).unwrap_err().reason.contains("DOCTYPE"));
        let e = plain("<r>&x;</r>").unwrap_err();
        assert!(e.reason.contains("undefined entity &x;"), "{e}");
        let e = plain("<r a=\"&x;\"/>").unwrap_err();
        assert!(e.reason.contains("attribute"), "{e}");
    }

    #[test]
    fn malformed_documents_have_positions() {
        let e = plain("<r>\n  <a></b>\n</r>").unwrap_err();
        assert_eq!((e.line, e.column), (2, 6), "{e}");
        assert!(e.to_string().contains("line 2, column 6"), "{e}");
        for bad in [
            "",
            "   ",
            "text",
            "<r>",
            "<r></r><r/>",
            "<r></r>tail",
            "<p:r/>",
            "<r p:a=\"1\"/>",
            "<r a=\"1\" a=\"2\"/>",
            "<r a=1/>",
            "</r>",
            "<r>&#0;</r>",
            "<r>&#xD800;</r>",
            "<r>&</r>",
        ] {
            assert!(plain(bad).is_err(), "{bad:?} must be refused");
        }
        let e = parse(b"<r>\xFF</r>", |_, _| false).unwrap_err();
        assert!(e.reason.contains("UTF-8"), "{e}");
    }

    #[test]
    fn limits() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(plain(&deep).unwrap_err().reason.contains("deeper"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(plain(&ok).is_ok());
        let wide = format!("<r>{}</r>", "<a/>".repeat(MAX_ELEMENTS));
        assert!(plain(&wide).unwrap_err().reason.contains("elements"));
        let decls: String = (0..=MAX_NAMESPACE_DECLARATIONS)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        let e = plain(&format!("<r{decls}/>")).unwrap_err();
        assert!(e.reason.contains("namespace declarations"), "{e}");
    }

    #[test]
    fn select_and_find() {
        let root = plain(r#"<r xmlns="urn:x"><a><b>1</b><b>2</b></a><a><b>3</b></a></r>"#).unwrap();
        let bs: Vec<&str> = root
            .select(&[("urn:x", "a"), ("urn:x", "b")])
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(bs, ["1", "2", "3"]);
        assert_eq!(
            root.find(|e| e.text == "3").map(|e| e.local.as_str()),
            Some("b")
        );
        assert!(root.find(|e| e.local == "zzz").is_none());
    }

    #[test]
    fn quotes_are_short_and_clean() {
        assert_eq!(quote("  a\nb  "), "a b");
        let long = "x".repeat(500);
        assert_eq!(quote(&long).chars().count(), MAX_QUOTE + 1);
    }
}
