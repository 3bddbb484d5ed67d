//! `warden import` as a user runs it: Intercept's 53 scaffolds (read from
//! ../shared/reference, never copied here), richer Intercept policies written for these
//! tests, the hosted product's YAML form, and mistakes, each reported where it is written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{data, warden};

/// The imported text compiles, and `warden check` finds nothing to say against it.
fn valid(text: &str, name: &str) {
    warden_dsl::compile(text).unwrap_or_else(|e| panic!("{name} does not compile: {e}\n{text}"));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.pol"));
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = warden(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{name}: {out}{err}");
}

fn sha(text: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    format!("{:016x}", h.finish())
}

#[test]
fn every_intercept_scaffold_imports_and_checks() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/intercept-policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "Intercept's scaffolds are read from {} ({e}): check out the project with ../shared beside it",
                dir.display()
            )
        })
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 53, "the reference holds 53 scaffolds");
    // A summary per file (its content is Intercept's, so it stays out of the repository):
    // what was imported, and a hash of the exact output, so any change shows.
    let mut summary = String::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let (code, out, err) = warden(&["import", "intercept", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{name}: {err}");
        assert!(err.is_empty(), "{name}: {err}");
        valid(&out, &name);
        let source = std::fs::read_to_string(f).unwrap();
        // Every comment line is kept, in order.
        let mut kept = out.lines().map(str::trim).filter(|l| l.starts_with('#'));
        for c in source.lines().map(str::trim).filter(|l| l.starts_with('#')) {
            assert!(
                kept.any(|k| k == c),
                "{name}: comment lost or moved: {c}\n{out}"
            );
        }
        let comments_out = out
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count();
        let allows = out.lines().filter(|l| l.starts_with("allow ")).count();
        let default = out
            .lines()
            .find(|l| l.starts_with("default "))
            .unwrap_or("?");
        summary.push_str(&format!(
            "{name}: {allows} allowed tools, {default}, {comments_out} comment lines, {}\n",
            sha(&out)
        ));
    }
    insta::assert_snapshot!("intercept_scaffolds", summary);
}

#[test]
fn richer_intercept_policies_import_exactly_or_say_where_they_cannot() {
    // Argument guards, deny rules, hide, rate limits and counters with their own messages,
    // spend caps, counters read by other tools' rules, refunds, `"*"` rules and limits: all
    // said exactly.
    for name in ["github-guards", "stripe-spend", "filesystem-allowlist"] {
        let (code, out, err) = warden(&["import", "intercept", &format!("intercept/{name}.yaml")]);
        assert_eq!((code, err.as_str()), (0, ""), "{name}");
        valid(&out, name);
        insta::assert_snapshot!(format!("intercept_{name}"), out);
    }
    // What cannot be said is refused where it is written, or with --lossy imported with a
    // comment in its place.
    let file = "intercept/inexact.yaml";
    let (code, out, err) = warden(&["import", "intercept", file]);
    assert_eq!(code, 1, "what Warden cannot say is an error");
    assert!(out.is_empty(), "nothing is written: {out}");
    insta::assert_snapshot!("intercept_inexact_refused", err);
    let (code, out, err) = warden(&["import", "intercept", "--lossy", file]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("inexact.yaml:6:5"),
        "warnings keep their place: {err}"
    );
    assert!(
        out.contains("# LOSSY: operator \"eq\" on a list or mapping value"),
        "{out}"
    );
    valid(&out, "inexact");
    insta::assert_snapshot!("intercept_inexact_lossy", out);
}

/// Calls decided by Intercept's own engine (its config, engine and proxy packages run on
/// these policies) get the same answers from the imported `.pol`: each
/// `intercept/NAME.test.pol` holds those calls and answers, run with `warden test` against
/// what `warden import` wrote.
#[test]
fn imported_policies_answer_as_intercept_did() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-import-semantics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["github-guards", "stripe-spend", "filesystem-allowlist"] {
        let out = dir.join(format!("{name}.pol"));
        let (code, _, err) = warden(&[
            "import",
            "intercept",
            &format!("intercept/{name}.yaml"),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{name}: {err}");
        std::fs::copy(
            data().join(format!("intercept/{name}.test.pol")),
            dir.join(format!("{name}.test.pol")),
        )
        .unwrap();
    }
    let run = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("test")
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run warden test");
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    assert!(text.contains("12 passed, 0 failed"), "{text}");
}

#[test]
fn mistakes_are_reported_where_they_are_written() {
    let (code, out, err) = warden(&["import", "intercept", "intercept/mistakes.yaml"]);
    assert_eq!((code, out.as_str()), (1, ""));
    insta::assert_snapshot!("intercept_mistakes", err);
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-import-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text, expect) in [
        (
            "dup.yaml",
            "version: \"1\"\ntools:\n  a:\n  a:\n",
            "dup.yaml:4:3: not YAML: duplicated key in mapping",
        ),
        (
            "flow.yaml",
            "version: \"1\"\nhide: [a\n",
            "flow.yaml:3:1: not YAML",
        ),
        (
            "v2.yaml",
            "version: \"2\"\n",
            "v2.yaml:1:10: `version` must be \"1\"",
        ),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let (code, _, err) = warden(&["import", "intercept", path.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(err.contains(expect), "{file}: {err}");
    }
}

#[test]
fn the_hosted_yaml_form_imports_counted_per_session() {
    let (code, out, err) = warden(&["import", "policylayer", "policylayer/linode.yaml"]);
    assert_eq!(code, 0, "{err}");
    valid(&out, "linode-hosted");
    insta::assert_snapshot!("policylayer_linode", out);
    // And goes back to the hosted format as its own rate limits and denials.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-import-hosted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pol = dir.join("linode.pol");
    std::fs::write(&pol, &out).unwrap();
    let (code, json, err) = warden(&["compile", "--target", "policylayer", pol.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["tools"]["update_instance"]["rate_limit"],
        serde_json::json!({"max": 10, "window": 60}),
        "{json}"
    );
}

#[test]
fn several_files_go_to_a_directory() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-import-many-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (code, _, err) = warden(&[
        "import",
        "intercept",
        "--lossy",
        "intercept/github-guards.yaml",
        "intercept/stripe-spend.yaml",
        "-o",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("github-guards.pol").is_file() && dir.join("stripe-spend.pol").is_file());
    let (code, _, err) = warden(&[
        "import",
        "intercept",
        "intercept/github-guards.yaml",
        "intercept/stripe-spend.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("give -o DIR"), "{err}");
}
