//! JSON Pointers (RFC 6901), the way every problem and every decision names its place.

/// Escapes one reference token: `~` becomes `~0` and `/` becomes `~1`.
pub fn escape(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1").into()
    } else {
        token.into()
    }
}

/// Appends one token to a pointer.
pub fn child(parent: &str, token: &str) -> String {
    let token = escape(token);
    let mut out = String::with_capacity(parent.len() + 1 + token.len());
    out.push_str(parent);
    out.push('/');
    out.push_str(&token);
    out
}

/// Appends an array index to a pointer.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}/{i}")
}

/// Splits a pointer into unescaped tokens; `None` when it is not a pointer.
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_splits_round_trip() {
        let p = child(&child("", "tools"), "a/b~c");
        assert_eq!(p, "/tools/a~1b~0c");
        assert_eq!(tokens(&p).unwrap(), vec!["tools", "a/b~c"]);
        assert_eq!(tokens("").unwrap(), Vec::<String>::new());
        assert!(tokens("tools").is_none());
    }
}
