//! Syntax highlighting for the policy page: comments, strings, numbers and the `.pol`
//! keywords (a policy.json gets its strings and numbers marked). The text is escaped by
//! maud; only the spans are ours.

use maud::{Markup, html};

const KEYWORDS: &[&str] = &[
    "version", "default", "allow", "deny", "hide", "tool", "all", "tools", "limit", "per",
    "minute", "hour", "day", "second", "grant", "session", "claim", "global", "as", "cost",
    "require", "else", "if", "approval", "timeout", "on", "shadow", "matches", "contains", "in",
    "not", "exists", "and", "or", "caller", "args", "message", "true", "false", "redact", "via",
    "client", "queue", "refund", "error",
];

enum Token<'a> {
    Plain(&'a str),
    Keyword(&'a str),
    Str(&'a str),
    Number(&'a str),
    Comment(&'a str),
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut plain) = (0, 0);
    while i < bytes.len() {
        let start = i;
        let token = match bytes[i] {
            b'#' => {
                i += text[i..].find('\n').unwrap_or(text.len() - i);
                Some(Token::Comment(&text[start..i]))
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(bytes.len());
                Some(Token::Str(&text[start..i]))
            }
            b'0'..=b'9' if start == 0 || !is_word(bytes[start - 1]) => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                Some(Token::Number(&text[start..i]))
            }
            b if is_word(b) => {
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                KEYWORDS.contains(&word).then_some(Token::Keyword(word))
            }
            _ => {
                // Step over one whole character.
                i += text[i..].chars().next().map_or(1, char::len_utf8);
                None
            }
        };
        if let Some(t) = token {
            if plain < start {
                out.push(Token::Plain(&text[plain..start]));
            }
            out.push(t);
            plain = i;
        }
    }
    if plain < text.len() {
        out.push(Token::Plain(&text[plain..]));
    }
    out
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

pub fn pol(text: &str) -> Markup {
    html! {
        @for t in tokens(text) {
            @match t {
                Token::Plain(s) => (s),
                Token::Keyword(s) => span.k { (s) },
                Token::Str(s) => span.s { (s) },
                Token::Number(s) => span.n { (s) },
                Token::Comment(s) => span.c { (s) },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_keywords_strings_numbers_and_comments_and_escapes_the_rest() {
        let html = pol("# caps <b>\ntool pay_x {\n  limit 30 per minute else \"no <script>\"\n}")
            .into_string();
        assert!(
            html.contains(r#"<span class="c"># caps &lt;b&gt;</span>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<span class="k">tool</span> pay_x {"#),
            "{html}"
        );
        assert!(html.contains(r#"<span class="n">30</span>"#), "{html}");
        assert!(
            html.contains(r#"<span class="s">&quot;no &lt;script&gt;&quot;</span>"#),
            "{html}"
        );
        // Every byte of the source is there, in order.
        let text: String = tokens("a \"b\\\"c\" 1x é # d")
            .iter()
            .map(|t| match t {
                Token::Plain(s)
                | Token::Keyword(s)
                | Token::Str(s)
                | Token::Number(s)
                | Token::Comment(s) => *s,
            })
            .collect();
        assert_eq!(text, "a \"b\\\"c\" 1x é # d");
    }
}
