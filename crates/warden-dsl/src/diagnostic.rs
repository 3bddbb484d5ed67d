//! Located problems in `.pol` text, rendered with miette.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

use crate::ast::Span;

/// One problem at a byte span of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column of the start.
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        warden_policy::locate::line_col(text, self.span.start)
    }

    /// The diagnostic as a miette report over `text`, named `name`.
    pub fn render(&self, name: &str, text: &str, color: bool) -> String {
        let (line, col) = self.line_col(text);
        let report = Rendered {
            message: format!("{name}:{line}:{col}: {}", self.message),
            src: NamedSource::new(name, text.to_owned()),
            span: SourceSpan::from(self.span.start.min(text.len())..self.span.end.min(text.len())),
            help: self.help.clone(),
        };
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let mut out = String::new();
        if GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            .render_report(&mut out, &report)
            .is_err()
        {
            out = report.message;
        }
        out
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct Rendered {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: SourceSpan,
    #[help]
    help: Option<String>,
}

/// Everything that can go wrong with `.pol` text: always a list of located diagnostics.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} problem(s) in the policy", diagnostics.len())]
pub struct Error {
    pub diagnostics: Vec<Diagnostic>,
}

impl Error {
    /// All diagnostics, rendered and separated by blank lines.
    pub fn render(&self, name: &str, text: &str, color: bool) -> String {
        self.diagnostics
            .iter()
            .map(|d| d.render(name, text, color))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
