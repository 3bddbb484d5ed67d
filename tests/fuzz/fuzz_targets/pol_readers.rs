//! `.pol` text: the hand-written reader and pest's agree (a file the fast reader accepts,
//! pest accepts with the same AST), and neither panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fast = warden_dsl::parse(text);
    let pest = warden_dsl::parse_with_pest(text);
    match (fast, pest) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the readers disagree on:\n{text}"),
        (Ok(_), Err(e)) => panic!("only the fast reader accepts:\n{text}\n{e:?}"),
        // `parse` falls back to pest, so pest accepting means `parse` did too.
        (Err(_), Ok(_)) => panic!("only pest accepts:\n{text}"),
        (Err(_), Err(_)) => {}
    }
    // A file that compiles decompiles to text that compiles to the same policy.
    if let Ok(c) = warden_dsl::compile(text) {
        let again = warden_dsl::decompile(&c.policy);
        let back = warden_dsl::compile(&again)
            .unwrap_or_else(|e| panic!("decompiled text does not compile:\n{again}\n{e:?}"));
        assert_eq!(
            back.policy, c.policy,
            "round trip changed the policy:\n{text}\n---\n{again}"
        );
    }
});
