//! "Did you mean" suggestions, shared by the JSON loader and the `.pol` compiler.

/// The known word closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(word: &str, known: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| {
            (
                k,
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
            )
        })
        // A third of the word may be wrong, at least one edit, at most four.
        .filter(|(k, d)| *d <= (k.chars().count() / 3).clamp(1, 4))
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["version", "default", "hide", "all_tools", "tools"];
        assert_eq!(did_you_mean("tool", keys), Some("tools"));
        assert_eq!(did_you_mean("defualt", keys), Some("default"));
        assert_eq!(did_you_mean("Version", keys), Some("version"));
        assert_eq!(did_you_mean("banana", keys), None);
        assert_eq!(
            did_you_mean(
                "create_personal_acess_token",
                ["create_personal_access_token"]
            ),
            Some("create_personal_access_token")
        );
    }
}
