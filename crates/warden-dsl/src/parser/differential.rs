//! The hand-written reader must accept exactly what pest accepts and build the same AST,
//! spans included. Inputs: the repository's `.pol` files, files generated from the grammar
//! with random layout, and random edits of both (most of which are syntax errors).

use std::path::Path;

use super::{fast, grammar};

/// xorshift64*: deterministic, so a failure names a case that can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn agree(text: &str, case: &str) {
    let by_pest = grammar::parse(text).ok();
    let by_hand = fast::parse(text);
    assert_eq!(
        by_hand, by_pest,
        "the readers disagree on {case}:\n-----\n{text}\n-----"
    );
}

/// Blanks and comments between tokens; sometimes none at all.
fn gap(r: &mut Rng) -> &'static str {
    r.pick(&[
        " ",
        " ",
        " ",
        "\n",
        "\n  ",
        "\t",
        "\r\n",
        "  # note\n",
        "#\n",
        "",
        " # a { \"x\n",
    ])
}

const WORDS: &[&str] = &[
    "version",
    "default",
    "allow",
    "deny",
    "mode",
    "enforce",
    "shadow",
    "hide",
    "all",
    "tools",
    "tool",
    "if",
    "always",
    "because",
    "require",
    "else",
    "approval",
    "timeout",
    "seconds",
    "on",
    "limits",
    "and",
    "exists",
    "missing",
    "not",
    "in",
    "matches",
    "contains",
    "limit",
    "per",
    "minute",
    "hour",
    "day",
    "grant",
    "session",
    "ip",
    "global",
    "claim",
    "as",
    "cost",
    "true",
    "false",
    "null",
    "resource",
    "resources",
    "prompt",
    "prompts",
    "server_request",
    "server_requests",
    "methods",
    "defaults",
    "lists",
    "callable",
];

/// The words `default ACTION` may be followed by: kinds, near misses and statement words.
const KIND_WORDS: &[&str] = &[
    "tools",
    "resources",
    "prompts",
    "methods",
    "server_requests",
    "resource",
    "tool",
    "method",
    "prompt",
    "kinds",
];

fn name(r: &mut Rng) -> String {
    match r.below(8) {
        0 => r.pick(WORDS).to_owned(),
        1 => r.pick(&["get_*", "list_?x", "a.b-c", "*", "x9"]).to_owned(),
        2 => r
            .pick(&[
                "\"file:///srv/docs/*\"",
                "\"sampling/createMessage\"",
                "\"odd name\"",
                "\"q\\\"uote\"",
                "\"\\u00e9\"",
                "\"bad\\q\"",
                "\"tab\there\"",
                "\"\"",
            ])
            .to_owned(),
        3 => format!("{}{}", r.pick(WORDS), r.pick(&["_x", "-y", "s", ".z"])),
        _ => format!(
            "{}_{}",
            r.pick(&["create", "delete", "get", "reboot"]),
            r.below(50)
        ),
    }
}

fn scalar(r: &mut Rng) -> String {
    r.pick(&[
        "1",
        "-2.5",
        "1e3",
        "2E-2",
        "007",
        "1e999",
        "\"us-east\"",
        "\"\\n\"",
        "true",
        "false",
        "null",
        "1.",
        "-",
        "3x",
        "18446744073709551616",
    ])
    .to_owned()
}

fn integer(r: &mut Rng) -> String {
    r.pick(&["1", "30", "0", "3600", "99999999999999999999", "5x", "2.5"])
        .to_owned()
}

fn path(r: &mut Rng) -> String {
    let mut p = String::from(r.pick(&["args", "args", "caller", "counter"]));
    for _ in 0..=r.below(3) {
        p.push('.');
        p.push_str(r.pick(&["region", "a-b", "$x", "\"odd key\"", "n1", ""]));
    }
    if r.chance(3) {
        p = p.replacen("args", r.pick(&["arg", "args ", "argsx"]), 1);
    }
    p
}

fn list(r: &mut Rng) -> String {
    let mut s = String::from("[");
    let n = r.below(4);
    for i in 0..n {
        if i > 0 {
            s.push(',');
            s.push_str(gap(r));
        }
        s.push_str(&scalar(r));
    }
    if n > 0 && r.chance(20) {
        s.push(',');
    }
    s.push_str(gap(r));
    s.push(']');
    s
}

fn condition(r: &mut Rng) -> String {
    let test = match r.below(8) {
        0 => "exists".to_owned(),
        1 => "missing".to_owned(),
        2 => format!("not{}in{}{}", gap(r), gap(r), list(r)),
        3 => format!("in{}{}", gap(r), list(r)),
        4 => format!(
            "matches{}{}",
            gap(r),
            r.pick(&["/^g6-/", "/a\\/", "\"^x$\"", "//", "/(/"])
        ),
        5 => format!("contains{}{}", gap(r), scalar(r)),
        _ => format!(
            "{}{}{}",
            r.pick(&["==", "!=", "<", "<=", ">", ">=", "=<", "="]),
            gap(r),
            scalar(r)
        ),
    };
    format!("{}{}{test}", path(r), gap(r))
}

fn conditions(r: &mut Rng) -> String {
    let mut s = condition(r);
    for _ in 0..r.below(3) {
        s.push_str(&format!("{}and{}{}", gap(r), gap(r), condition(r)));
    }
    s
}

fn limit(r: &mut Rng) -> String {
    let window = match r.below(5) {
        0 => "minute".to_owned(),
        1 => "hour".to_owned(),
        2 => "day".to_owned(),
        3 => format!("{}{}seconds", integer(r), gap(r)),
        _ => r.pick(&["fortnight", "minutes", "60"]).to_owned(),
    };
    let mut s = format!(
        "limit{}{}{}per{}{window}",
        gap(r),
        integer(r),
        gap(r),
        gap(r)
    );
    if r.chance(60) {
        let scope = r.pick(&[
            "per grant",
            "per session",
            "per ip",
            "global",
            "per user",
            "per claim team",
            "per claim org.id",
            "per claim",
            "per claim a..b",
        ]);
        s.push_str(&format!("{}{scope}", gap(r)));
    }
    if r.chance(40) {
        let counter = r.pick(&["writes", "\"a counter\"", "x-y$", "", "as"]);
        s.push_str(&format!("{}as{}{counter}", gap(r), gap(r)));
    }
    if r.chance(20) {
        s.push_str(&format!("{}cost{}{}", gap(r), gap(r), path(r)));
    }
    if r.chance(20) {
        let refund = r.pick(&["refund on error", "refund on", "refund error"]);
        s.push_str(&format!("{}{}", gap(r), refund.replace(' ', gap(r))));
    }
    if r.chance(20) {
        let message = r.pick(&["\"Slow down\"", "\"\"", "else", "\"a\\\"b\""]);
        s.push_str(&format!("{}else{}{message}", gap(r), gap(r)));
    }
    s
}

fn block_item(r: &mut Rng) -> String {
    match r.below(10) {
        0 | 1 => limit(r),
        2 => {
            let mut s = format!("deny{}", gap(r));
            if r.chance(20) {
                s.push_str("always");
            } else {
                s.push_str(&format!("if{}{}", gap(r), conditions(r)));
            }
            if r.chance(70) {
                s.push_str(&format!("{}because{}\"Too big\"", gap(r), gap(r)));
            }
            s
        }
        3 | 4 => {
            let mut s = format!("require{}", gap(r));
            if r.chance(20) {
                s.push_str("always");
            } else {
                s.push_str(&conditions(r));
            }
            if r.chance(60) {
                s.push_str(&format!("{}else{}\"No\"", gap(r), gap(r)));
            }
            s
        }
        5 => {
            let mut s = format!("require{}approval", gap(r));
            if r.chance(40) {
                let target = r.pick(&[
                    "client",
                    "queue",
                    "client or queue",
                    "client  or",
                    "clients",
                ]);
                s.push_str(&format!(
                    "{}via{}{}",
                    gap(r),
                    gap(r),
                    target.replace(' ', gap(r))
                ));
            }
            if r.chance(50) {
                s.push_str(&format!(
                    "{}timeout{}{}{}seconds",
                    gap(r),
                    gap(r),
                    integer(r),
                    gap(r)
                ));
            }
            if r.chance(50) {
                let action = r.pick(&["deny", "allow", "refuse"]);
                s.push_str(&format!("{}on{}timeout{}{action}", gap(r), gap(r), gap(r)));
            }
            s
        }
        6 => format!("mode{}{}", gap(r), r.pick(&["shadow", "enforce", "off"])),
        7 => format!("limits{}[{}]", gap(r), gap(r)),
        8 => format!("require{}[]", gap(r)),
        _ => format!("deny{}if{}[{}]", gap(r), gap(r), gap(r)),
    }
}

fn names(r: &mut Rng) -> String {
    let mut s = name(r);
    for _ in 0..r.below(3) {
        s.push_str(&format!("{},{}{}", gap(r), gap(r), name(r)));
    }
    s
}

fn block(r: &mut Rng) -> String {
    let mut s = String::from("{");
    for _ in 0..r.below(4) {
        s.push_str(gap(r));
        s.push_str(&block_item(r));
    }
    s.push_str(gap(r));
    s.push('}');
    s
}

fn kinds(r: &mut Rng) -> String {
    let mut s = r.pick(KIND_WORDS).to_owned();
    for _ in 0..r.below(3) {
        s.push_str(&format!("{},{}{}", gap(r), gap(r), r.pick(KIND_WORDS)));
    }
    s
}

fn statement(r: &mut Rng) -> String {
    match r.below(20) {
        12 | 13 => {
            let mut s = format!("default{}{}", gap(r), r.pick(&["deny", "allow"]));
            if r.chance(80) {
                s.push_str(&format!("{}{}", gap(r), kinds(r)));
            }
            s
        }
        14 => format!(
            "lists{}{}",
            gap(r),
            r.pick(&["all", "callable", "some", "all_"])
        ),
        15 => {
            let kind = r.pick(&["resources", "prompts", "resource", "tools"]);
            format!("hide{}{kind}{}[{}{}]", gap(r), gap(r), gap(r), names(r))
        }
        16 => format!(
            "{}{}{{{}}}",
            r.pick(&[
                "resources",
                "prompts",
                "server_requests",
                "defaults",
                "methods"
            ]),
            gap(r),
            gap(r)
        ),
        17 => format!(
            "allow{}{}{}{}",
            gap(r),
            r.pick(&["resource", "prompt", "server_request", "resources"]),
            gap(r),
            names(r)
        ),
        18 => format!(
            "allow{}{}",
            gap(r),
            r.pick(&["resource", "prompt", "server_request"])
        ),
        19 => format!(
            "{}{}{}{}{}",
            r.pick(&["resource", "prompt", "server_request"]),
            gap(r),
            names(r),
            gap(r),
            block(r)
        ),
        0 => format!(
            "version{}{}",
            gap(r),
            r.pick(&["1", "\"1\"", "2", "1.0", "v1"])
        ),
        1 => format!("default{}{}", gap(r), r.pick(&["deny", "allow", "block"])),
        2 => format!("mode{}{}", gap(r), r.pick(&["shadow", "enforce"])),
        3 => {
            let inner = if r.chance(20) {
                String::new()
            } else {
                names(r)
            };
            let comma = if r.chance(20) { "," } else { "" };
            format!("hide{}[{}{inner}{comma}{}]", gap(r), gap(r), gap(r))
        }
        4 => format!("all{}tools{}{}", gap(r), gap(r), block(r)),
        5 => format!("tools{}{{{}}}", gap(r), gap(r)),
        6 | 7 => format!("allow{}{}", gap(r), names(r)),
        _ => format!("tool{}{}{}{}", gap(r), names(r), gap(r), block(r)),
    }
}

fn generated(r: &mut Rng) -> String {
    let mut s = String::from(gap(r));
    for _ in 0..r.below(6) {
        s.push_str(&statement(r));
        s.push_str(r.pick(&["\n", "\n\n", " ", "", "\n# end\n"]));
    }
    s
}

/// One random edit: most turn a valid file into an invalid one somewhere in the middle.
fn mutate(r: &mut Rng, text: &str) -> String {
    let bytes = text.as_bytes();
    let at = |r: &mut Rng| {
        let mut i = r.below(bytes.len() + 1);
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (a, b) = {
        let (x, y) = (at(r), at(r));
        (x.min(y), x.max(y))
    };
    match r.below(5) {
        0 => {
            let mut cut = (a + r.below(8)).min(b);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{}", &text[..a], &text[cut..])
        }
        1 => format!("{}{}{}", &text[..a], r.pick(WORDS), &text[a..]),
        2 => format!(
            "{}{}{}",
            &text[..a],
            r.pick(&[
                "{", "}", "[", "]", ",", "\"", "/", "#", " ", "\n", ".", "==", "é"
            ]),
            &text[a..]
        ),
        3 => format!("{}{}{}", &text[..b], &text[a..b], &text[b..]),
        _ => format!("{}{}", &text[..a], &text[b..]),
    }
}

fn repository_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("../../examples"), root.join("tests/errors")] {
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pol"))
            .filter(|p| !p.to_string_lossy().ends_with(".test.pol"))
            .collect();
        paths.sort();
        for p in paths {
            files.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
    assert!(files.len() > 20, "the corpus went missing: {files:?}");
    files
}

#[test]
fn repository_files_read_the_same() {
    for (name, text) in repository_files() {
        agree(&text, &name);
    }
}

#[test]
fn generated_files_read_the_same() {
    let mut r = Rng(0x5EED_0001);
    let mut accepted = 0;
    for case in 0..4000 {
        let text = generated(&mut r);
        agree(&text, &format!("generated case {case}"));
        accepted += usize::from(fast::parse(&text).is_some());
    }
    // Both outcomes must be well represented, or the comparison says little.
    assert!(accepted > 400, "only {accepted} generated files were valid");
    assert!(accepted < 3600, "{accepted} generated files were valid");
}

#[test]
fn edited_files_read_the_same() {
    let mut r = Rng(0x5EED_0002);
    let mut seeds: Vec<String> = repository_files().into_iter().map(|(_, t)| t).collect();
    seeds.extend((0..200).map(|_| generated(&mut r)));
    let mut accepted = 0;
    for case in 0..6000 {
        let seed = &seeds[r.below(seeds.len())];
        let mut text = mutate(&mut r, seed);
        if r.chance(30) {
            text = mutate(&mut r, &text);
        }
        agree(&text, &format!("edit case {case}"));
        accepted += usize::from(fast::parse(&text).is_some());
    }
    assert!(
        (300..5700).contains(&accepted),
        "{accepted} of 6000 edited files were valid"
    );
}
