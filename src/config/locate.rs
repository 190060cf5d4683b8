//! The one place that calls the YAML parser: it reads the text into the raw structs and into a
//! map from key paths ("routes[2].upstream") to line:column, and turns parser errors into
//! located diagnostics.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, MessageFormatter, Options, Spanned};

use super::diagnostic::{suggest, Diagnostic, Severity};
use super::raw::RawConfig;

/// Where each key path of the document sits in the file.
#[derive(Debug, Default)]
pub struct Locations {
    /// Path -> position of the value (for a block mapping or list: of its first entry).
    by_path: HashMap<String, (u64, u64)>,
    /// Position of a key or value -> the paths found there, to locate parser errors.
    by_position: HashMap<(u64, u64), Vec<String>>,
}

impl Locations {
    /// Line and column of `path`, or of its nearest parent that exists; (0, 0) if none does.
    pub fn find(&self, path: &str) -> (u64, u64) {
        let mut current = path;
        loop {
            if let Some(pos) = self.by_path.get(current) {
                return *pos;
            }
            match parent(current) {
                Some(p) => current = p,
                None => return (0, 0),
            }
        }
    }

    /// The path at a position, preferring one that ends in `key` (several paths can start at
    /// the same place: a block mapping and its first key), else the outermost.
    fn path_at(&self, line: u64, column: u64, key: Option<&str>) -> String {
        let Some(paths) = self.by_position.get(&(line, column)) else {
            return String::new();
        };
        let wanted = key.and_then(|k| paths.iter().find(|p| last_segment(p) == k));
        wanted
            .or_else(|| paths.iter().min_by_key(|p| p.len()))
            .cloned()
            .unwrap_or_default()
    }

    fn record(&mut self, path: String, at: Location, is_key: bool) {
        let pos = (at.line(), at.column());
        if pos.0 == 0 {
            return;
        }
        if !is_key {
            self.by_path.insert(path.clone(), pos);
        }
        self.by_position.entry(pos).or_default().push(path);
    }

    fn flatten(&mut self, prefix: &str, node: &Spanned<Node>) {
        if !prefix.is_empty() {
            self.record(prefix.to_owned(), node.referenced, false);
        }
        match &node.value {
            Node::Leaf => {}
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.flatten(&format!("{prefix}[{i}]"), item);
                }
            }
            Node::Map(entries) => {
                for (key, value) in entries {
                    let path = if prefix.is_empty() {
                        key.value.clone()
                    } else {
                        format!("{prefix}.{}", key.value)
                    };
                    self.record(path.clone(), key.referenced, true);
                    self.flatten(&path, value);
                }
            }
        }
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> `` (the root has no location), `` -> none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |i| &path[..i]))
}

fn last_segment(path: &str) -> &str {
    path.rfind('.').map_or(path, |i| &path[i + 1..])
}

/// The shape of the document, kept only to learn where each node is.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Node::Map(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Parses `text` into the raw schema and its location map. The default options keep the
/// parser's budget (node, depth and alias-expansion limits) on, which defuses YAML bombs.
pub fn parse_yaml(text: &str, file: &str) -> Result<(RawConfig, Locations), Box<Diagnostic>> {
    if text.trim().is_empty() || is_only_comments(text) {
        return Ok((RawConfig::default(), Locations::default()));
    }
    let tree = serde_saphyr::from_str_with_options::<Spanned<Node>>(text, Options::default());
    let raw = serde_saphyr::from_str_with_options::<RawConfig>(text, Options::default());
    match (tree, raw) {
        (Ok(tree), Ok(raw)) => {
            let mut locations = Locations::default();
            locations.flatten("", &tree);
            Ok((raw, locations))
        }
        // The schema-free pass can only fail where the YAML itself is broken, and it words
        // syntax errors better than the typed pass does.
        (Err(e), Err(_)) => Err(Box::new(from_parser_error(&e, file, &Locations::default()))),
        // Locations are a convenience: never reject a document only because they failed.
        (Err(_), Ok(raw)) => Ok((raw, Locations::default())),
        (Ok(tree), Err(e)) => {
            let mut locations = Locations::default();
            locations.flatten("", &tree);
            Err(Box::new(from_parser_error(&e, file, &locations)))
        }
    }
}

fn is_only_comments(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

fn from_parser_error(err: &serde_saphyr::Error, file: &str, locations: &Locations) -> Diagnostic {
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    let raw_message = serde_saphyr::UserMessageFormatter.format_message(err.without_snippet());
    let raw_message: String = raw_message.chars().filter(|c| !c.is_control()).collect();
    let (path, message) = match parse_unknown_field(&raw_message) {
        Some((key, valid)) => (
            locations.path_at(line, column, Some(key)),
            unknown_key_message(key, &valid),
        ),
        None => (
            locations.path_at(line, column, None),
            friendlier(&raw_message),
        ),
    };
    Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        line,
        column,
        path,
        message,
    }
}

/// Picks apart serde's "unknown field `x`, expected one of `a`, `b`" (also "expected `a`" and
/// "there are no fields"), with or without backticks around the expected names.
fn parse_unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split_once("expected one of ")
        .or_else(|| rest.split_once("expected "))
        .map(|(_, list)| list);
    let valid = expected.map_or_else(Vec::new, |list| {
        list.split(", ")
            .map(|name| name.trim().trim_matches('`'))
            .filter(|name| !name.is_empty())
            .collect()
    });
    Some((key, valid))
}

fn unknown_key_message(key: &str, valid: &[&str]) -> String {
    let mut message = format!("unknown key {key:?}");
    if let Some(s) = suggest(key, valid.iter().copied()) {
        message.push_str(&format!("; did you mean {s:?}?"));
    }
    if valid.is_empty() {
        message.push_str(" (no keys are allowed here)");
    } else {
        message.push_str(&format!(" (valid keys: {})", valid.join(", ")));
    }
    message
}

/// Rewords the parser's terse type errors in the config's own vocabulary.
fn friendlier(message: &str) -> String {
    let integer = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    if let Some(ty) = message.strip_prefix("invalid ") {
        if integer.contains(&ty) {
            return "expected a non-negative whole number (or it is out of range)".to_owned();
        }
        if ty == "bool" || ty == "boolean" {
            return "expected true or false".to_owned();
        }
    }
    match message {
        "expected string scalar" => "expected a string".to_owned(),
        "expected mapping start" => "expected a mapping (key: value pairs)".to_owned(),
        "expected sequence start" => "expected a list".to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn locations(text: &str) -> Locations {
        parse_yaml(text, "c.yaml").unwrap().1
    }

    #[test]
    fn paths_map_to_value_positions() {
        let l = locations(
            "routes:\n  - name: a\n    upstream: api\n  - name: b\nupstreams:\n  api:\n    servers:\n      - { address: \"127.0.0.1:1\" }\n",
        );
        assert_eq!(l.find("routes[0].upstream"), (3, 15));
        assert_eq!(l.find("routes[1].name"), (4, 11));
        assert_eq!(l.find("upstreams.api.servers[0].address"), (8, 20));
        // A missing key falls back to its nearest existing parent.
        assert_eq!(l.find("routes[1].upstream"), (4, 5));
        assert_eq!(l.find("settings.via"), (0, 0));
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn unknown_field_messages_are_parsed() {
        let (key, valid) =
            parse_unknown_field("unknown field `hostt`, expected one of `host`, `path`").unwrap();
        assert_eq!(key, "hostt");
        assert_eq!(valid, ["host", "path"]);
        let (_, valid) = parse_unknown_field("unknown field `x`, expected one of a, b").unwrap();
        assert_eq!(valid, ["a", "b"]);
        let (_, valid) = parse_unknown_field("unknown field `x`, expected `a`").unwrap();
        assert_eq!(valid, ["a"]);
        let (_, valid) = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(valid.is_empty());
        assert!(parse_unknown_field("invalid u32").is_none());
    }

    #[test]
    fn blank_documents_are_empty_configs() {
        let (raw, _) = parse_yaml("# nothing here\n\n", "c.yaml").unwrap();
        assert!(raw.listeners.is_none());
        let (raw, _) = parse_yaml("", "c.yaml").unwrap();
        assert!(raw.routes.is_none());
    }

    #[test]
    fn yaml_bombs_are_refused() {
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 0u8..9 {
            let (p, n) = ((b'a' + i) as char, (b'a' + i + 1) as char);
            bomb.push_str(&format!(
                "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
            ));
        }
        let err = parse_yaml(&bomb, "c.yaml").unwrap_err();
        assert_eq!(err.severity, Severity::Error);
        assert!(err.line > 0, "{err}");
    }
}
