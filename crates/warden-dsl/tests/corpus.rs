//! Snapshot corpus: every example's compiled JSON and formatted text, and one small bad
//! file per kind of error with its rendered diagnostic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        // Policy tests (`warden test`) are another language.
        .filter(|p| !p.to_string_lossy().ends_with(".test.pol"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no .{ext} files in {}", dir.display());
    out
}

fn stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn examples_compile_and_are_canonical() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for path in files(&dir, "pol") {
        let text = std::fs::read_to_string(&path).unwrap();
        let compiled = warden_dsl::compile(&text)
            .unwrap_or_else(|e| panic!("{}", e.render(&stem(&path), &text, false)));
        insta::assert_json_snapshot!(
            format!("example_{}", stem(&path)),
            compiled.policy.to_value()
        );
        assert_eq!(
            warden_dsl::format(&text).unwrap(),
            text,
            "{} is not in canonical layout",
            path.display()
        );
        // json -> pol -> json
        let back = warden_dsl::compile(&warden_dsl::decompile(&compiled.policy)).unwrap();
        assert_eq!(back.policy, compiled.policy);
    }
}

#[test]
fn every_error_kind_renders_located() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/errors");
    for path in files(&dir, "pol") {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = format!("{}.pol", stem(&path));
        let err = match warden_dsl::compile(&text) {
            Ok(_) => panic!("{name} compiled, but it is in the error corpus"),
            Err(e) => e,
        };
        let rendered = err.render(&name, &text, false);
        assert!(rendered.contains(&format!("{name}:")), "{rendered}");
        insta::assert_snapshot!(format!("error_{}", stem(&path)), rendered);
    }
}

#[test]
fn formatter_keeps_comments_and_is_idempotent() {
    let messy = r#"# header comment
tool create_instance {   # trailing on header
limit 5 per hour per grant as instances
  # before require
      require args.region in ["us-east","eu-west"] else "regions"
    deny if args.type matches "^g6/dedicated" because "no"
}
default   deny
allow list_*
tool get_tag {}
allow get_x   # why get_x
hide [ delete_* ]
# Reads an instance.
tool get_instance { limit 50 per minute as reads }
# Reads a volume.
tool get_volume {
  limit 50 per minute as reads  # shared with get_instance
}
# the end
"#;
    let once = warden_dsl::format(messy).unwrap();
    insta::assert_snapshot!(once);
    assert_eq!(
        warden_dsl::format(&once).unwrap(),
        once,
        "formatting is idempotent"
    );
    for c in [
        "# header comment",
        "# trailing on header",
        "# before require",
        "# why get_x",
        "# the end",
    ] {
        assert!(once.contains(c), "lost {c:?}");
    }
    // Entries printed as one group keep each name's comments, in order, on their lines.
    assert!(once.contains("allow list_*, get_tag, get_x  # why get_x\n"));
    assert!(
        once.contains("# Reads an instance.\n# Reads a volume.\ntool get_instance, get_volume {\n")
    );
    assert!(once.contains("as reads  # shared with get_instance\n"));
    assert_eq!(
        warden_dsl::compile(&once).unwrap().policy,
        warden_dsl::compile(messy).unwrap().policy
    );
}

#[test]
fn pathological_input_is_an_error_not_a_crash() {
    let deep = format!("tool a {{ require args.x in [{}] }}", "[".repeat(100_000));
    assert!(warden_dsl::compile(&deep).is_err());
    let many_ands = format!(
        "tool a {{ require {} }}",
        vec!["args.x == 1"; 20_000].join(" and ")
    );
    assert!(warden_dsl::compile(&many_ands).is_ok());
    let huge = "#".repeat(warden_dsl::MAX_SOURCE_BYTES + 1);
    let err = warden_dsl::compile(&huge).unwrap_err();
    assert!(err.diagnostics[0].message.contains("too large"));
    for garbage in [
        "",
        "{",
        "}",
        "tool",
        "tool a {",
        "\"",
        "/",
        "allow",
        "limit 3 per minute",
        "\u{0}",
        "tool \"\" {}",
    ] {
        let _ = warden_dsl::compile(garbage);
    }
}
