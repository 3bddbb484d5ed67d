//! Tool-name globs: `*` matches any run of characters, `?` exactly one; everything else
//! is literal. Specificity is the number of literal characters, so `create_*` beats `*`.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Any,
}

/// A compiled tool-name glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    toks: Vec<Tok>,
    /// Literal characters before the first wildcard: a cheap first test.
    prefix: String,
}

impl Glob {
    /// Whether a tool key is a glob rather than an exact name.
    pub fn is_glob(key: &str) -> bool {
        key.contains(['*', '?'])
    }

    pub fn new(pattern: &str) -> Glob {
        let mut toks: Vec<Tok> = Vec::with_capacity(pattern.len());
        for c in pattern.chars() {
            let t = match c {
                '*' => Tok::Any,
                '?' => Tok::One,
                c => Tok::Lit(c),
            };
            // `**` means the same as `*`; one token keeps matching linear.
            if !(t == Tok::Any && toks.last() == Some(&Tok::Any)) {
                toks.push(t);
            }
        }
        let prefix = pattern
            .chars()
            .take_while(|c| !matches!(c, '*' | '?'))
            .collect();
        Glob {
            pattern: pattern.to_owned(),
            toks,
            prefix,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Number of literal characters: the higher, the more specific.
    pub fn specificity(&self) -> usize {
        self.toks
            .iter()
            .filter(|t| matches!(t, Tok::Lit(_)))
            .count()
    }

    pub fn matches(&self, name: &str) -> bool {
        if !name.starts_with(&self.prefix) {
            return false;
        }
        // Greedy matching with backtracking to the last `*`: linear for one star,
        // O(n·m) at worst, and names are short. `n` is a byte offset into `name`.
        let (mut p, mut n) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = name[n..].chars().next() {
            match self.toks.get(p) {
                Some(Tok::Lit(l)) if *l == c => (p, n) = (p + 1, n + c.len_utf8()),
                Some(Tok::One) => (p, n) = (p + 1, n + c.len_utf8()),
                Some(Tok::Any) => {
                    star = Some((p, n));
                    p += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        let skipped = name[sn..].chars().next().map_or(1, char::len_utf8);
                        star = Some((sp, sn + skipped));
                        (p, n) = (sp + 1, sn + skipped);
                    }
                    None => return false,
                },
            }
        }
        self.toks[p..].iter().all(|t| *t == Tok::Any)
    }

    /// Whether some name matches both globs.
    pub fn overlaps(&self, other: &Glob) -> bool {
        self.common_name(other).is_some()
    }

    /// A name both globs match, if there is one: a breadth-first search of the product
    /// of the two patterns, so the example is a shortest one.
    pub fn common_name(&self, other: &Glob) -> Option<String> {
        let (a, b) = (&self.toks, &other.toks);
        // state -> (previous state, character consumed on the way in)
        let mut came_from: HashMap<State, Option<(State, Option<char>)>> = HashMap::new();
        let mut queue = VecDeque::from([(0usize, 0usize)]);
        came_from.insert((0, 0), None);
        while let Some((i, j)) = queue.pop_front() {
            if i == a.len() && j == b.len() {
                let mut name: Vec<char> = Vec::new();
                let mut at = (i, j);
                while let Some(Some((prev, c))) = came_from.get(&at) {
                    name.extend(c);
                    at = *prev;
                }
                return Some(name.into_iter().rev().collect());
            }
            let mut next: Vec<((usize, usize), Option<char>)> = Vec::new();
            // A star may match nothing.
            if a.get(i) == Some(&Tok::Any) {
                next.push(((i + 1, j), None));
            }
            if b.get(j) == Some(&Tok::Any) {
                next.push(((i, j + 1), None));
            }
            // Or both consume one common character.
            if let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
                let c = match (x, y) {
                    (Tok::Lit(c), Tok::Lit(d)) => (c == d).then_some(*c),
                    (Tok::Lit(c), _) | (_, Tok::Lit(c)) => Some(*c),
                    _ => Some('x'),
                };
                if let Some(c) = c {
                    let ni = if *x == Tok::Any { i } else { i + 1 };
                    let nj = if *y == Tok::Any { j } else { j + 1 };
                    next.push(((ni, nj), Some(c)));
                }
            }
            for (state, c) in next {
                if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(state) {
                    e.insert(Some(((i, j), c)));
                    queue.push_back(state);
                }
            }
        }
        None
    }
}

/// Several globs answered as one: the most specific match wins.
/// A position in each of two patterns, during [`Glob::common_name`].
type State = (usize, usize);

#[derive(Debug, Clone, Default)]
pub(crate) struct GlobMatcher<T> {
    /// Sorted by specificity, most specific first; equal-specificity globs never overlap
    /// in a validated policy, so the first match is the only candidate.
    globs: Vec<(Glob, T)>,
}

impl<T> GlobMatcher<T> {
    pub(crate) fn new(mut globs: Vec<(Glob, T)>) -> Self {
        globs.sort_by_key(|(g, _)| std::cmp::Reverse(g.specificity()));
        GlobMatcher { globs }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    pub(crate) fn find(&self, name: &str) -> Option<(&Glob, &T)> {
        self.globs
            .iter()
            .find(|(g, _)| g.matches(name))
            .map(|(g, t)| (g, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_stars_and_single_characters() {
        let g = Glob::new("list_*");
        assert!(g.matches("list_instances"));
        assert!(g.matches("list_"));
        assert!(!g.matches("get_list_x"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("*_instance").matches("delete_instance"));
        assert!(!Glob::new("*_instance").matches("delete_instances"));
        assert!(Glob::new("a*b*c").matches("aXbYbZc"));
        assert!(!Glob::new("a*b*c").matches("aXbYbZ"));
        assert!(Glob::new("get_?").matches("get_x"));
        assert!(!Glob::new("get_?").matches("get_xy"));
        assert!(Glob::new("ä*ö").matches("äxyzö"));
    }

    #[test]
    fn specificity_counts_literals() {
        assert_eq!(Glob::new("*").specificity(), 0);
        assert_eq!(Glob::new("create_*").specificity(), 7);
        assert_eq!(Glob::new("*_?").specificity(), 1);
    }

    #[test]
    fn overlap_is_exact() {
        let o = |a: &str, b: &str| Glob::new(a).overlaps(&Glob::new(b));
        assert!(o("list_*", "*_instances")); // list_instances
        assert!(o("a*", "*b")); // ab
        assert!(!o("a*", "b*"));
        assert!(!o("*_x", "*_y"));
        assert!(o("get_?", "get_*"));
        assert!(!o("get_?", "get_??"));
        assert!(o("*", "anything"));
        assert!(!o("a*b", "a*c"));
        assert_eq!(
            Glob::new("list_*")
                .common_name(&Glob::new("*_instances"))
                .as_deref(),
            Some("list_instances")
        );
        assert_eq!(
            Glob::new("a*").common_name(&Glob::new("*b")).as_deref(),
            Some("ab")
        );
    }

    #[test]
    fn matcher_prefers_the_most_specific() {
        let m = GlobMatcher::new(vec![
            (Glob::new("*"), 0),
            (Glob::new("create_*"), 1),
            (Glob::new("create_domain_*"), 2),
        ]);
        assert_eq!(m.find("create_domain_record").map(|(_, t)| *t), Some(2));
        assert_eq!(m.find("create_instance").map(|(_, t)| *t), Some(1));
        assert_eq!(m.find("reboot").map(|(_, t)| *t), Some(0));
    }
}
