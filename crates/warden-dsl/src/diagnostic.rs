//! Located problems in `.pol` text, rendered with miette.

use miette::{GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};

use crate::ast::Span;

/// One problem at a byte span of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
    /// Warnings are advice about a valid policy; errors make it invalid.
    pub warning: bool,
}

impl Diagnostic {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            span,
            message: message.into(),
            help: None,
            warning: false,
        }
    }

    pub fn warning(mut self) -> Self {
        self.warning = true;
        self
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
            severity: if self.warning {
                miette::Severity::Warning
            } else {
                miette::Severity::Error
            },
        };
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let mut out = String::new();
        if GraphicalReportHandler::new_themed(theme)
            .with_width(100)
            // The `file:line:col: message` line stays whole, so editors and grep can find it.
            .with_wrap_lines(false)
            .render_report(&mut out, &report)
            .is_err()
        {
            out = report.message;
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Rendered {
    message: String,
    src: NamedSource<String>,
    span: SourceSpan,
    help: Option<String>,
    severity: miette::Severity,
}

// Written out because the derive only knows a fixed severity.
impl miette::Diagnostic for Rendered {
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".into()), self.span),
        )))
    }
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
