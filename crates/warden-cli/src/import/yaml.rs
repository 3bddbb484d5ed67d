//! YAML read with every node's place in the file, and the file's comment lines: saphyr
//! (the maintained successor of yaml-rust, YAML 1.2, duplicate keys refused) gives the
//! marks; this turns them into byte spans for the diagnostics.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use warden_dsl::Diagnostic;

/// A byte range of the source.
pub type Span = std::ops::Range<usize>;

/// One YAML node.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Span,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in file order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn what(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The line (1-based) the node starts on.
    pub fn line(&self, lines: &Lines) -> usize {
        lines.line_of(self.span.start)
    }

    /// As a JSON value, for condition values (`None`: a mapping, which conditions cannot hold).
    pub fn json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number)?,
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::json).collect::<Option<_>>()?),
            Kind::Map(_) => return None,
        })
    }
}

/// Where each line starts, to turn saphyr's (line, column in characters) into bytes.
pub struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    /// The byte offset of 1-based `line`, 0-based character `col`.
    pub fn offset(&self, line: usize, col: usize) -> usize {
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..]
            .char_indices()
            .nth(col)
            .map_or(self.text.len(), |(i, _)| start + i)
    }

    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|s| *s <= offset)
    }

    /// Full-line comments, by 1-based line, with the text after `#` (one space trimmed).
    pub fn comments(&self) -> Vec<(usize, String)> {
        self.text
            .lines()
            .enumerate()
            .filter_map(|(i, l)| {
                let t = l.trim_start();
                let body = t.strip_prefix('#')?;
                Some((
                    i + 1,
                    body.strip_prefix(' ').unwrap_or(body).trim_end().to_owned(),
                ))
            })
            .collect()
    }
}

/// The single document of `text`.
pub fn load(text: &str) -> Result<Node, Diagnostic> {
    let lines = Lines::new(text);
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        let at = lines.offset(e.marker().line(), e.marker().col());
        Diagnostic::new(at..at, format!("not YAML: {}", e.info()))
    })?;
    let mut docs = docs.into_iter();
    let Some(doc) = docs.next() else {
        return Err(Diagnostic::new(
            0..0,
            "the file is empty: expected a policy",
        ));
    };
    if let Some(extra) = docs.next() {
        let at = lines.offset(extra.span.start.line(), extra.span.start.col());
        return Err(Diagnostic::new(
            at..at,
            "a second YAML document: a policy file holds one",
        ));
    }
    convert(&doc, &lines)
}

fn convert(n: &MarkedYamlOwned, lines: &Lines) -> Result<Node, Diagnostic> {
    let start = lines.offset(n.span.start.line(), n.span.start.col());
    let end = lines.offset(n.span.end.line(), n.span.end.col()).max(start);
    let span = start..end;
    let kind = match &n.data {
        YamlDataOwned::Value(v) => match v {
            ScalarOwned::Null => Kind::Null,
            ScalarOwned::Boolean(b) => Kind::Bool(*b),
            ScalarOwned::Integer(i) => Kind::Int(*i),
            ScalarOwned::FloatingPoint(f) => Kind::Float(f.into_inner()),
            ScalarOwned::String(s) => Kind::Str(s.clone()),
        },
        YamlDataOwned::Sequence(items) => Kind::Seq(
            items
                .iter()
                .map(|i| convert(i, lines))
                .collect::<Result<_, _>>()?,
        ),
        YamlDataOwned::Mapping(m) => Kind::Map(
            m.iter()
                .map(|(k, v)| Ok((convert(k, lines)?, convert(v, lines)?)))
                .collect::<Result<_, Diagnostic>>()?,
        ),
        YamlDataOwned::Tagged(_, inner) => return convert(inner, lines),
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue | YamlDataOwned::Representation(..) => {
            return Err(Diagnostic::new(
                span,
                "a YAML value Warden cannot read here",
            ));
        }
    };
    Ok(Node { span, kind })
}
