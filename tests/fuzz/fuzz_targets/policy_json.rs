//! policy.json text: loading and validating never panics, and a policy that loads compiles
//! and decides a call of every kind, and what lists show.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = warden_policy::Policy::from_json_str(text) else {
        return;
    };
    let compiled = warden_policy::CompiledPolicy::new(&policy)
        .unwrap_or_else(|e| panic!("a loaded policy does not compile: {e}\n{text}"));
    let args = serde_json::json!({"amount": 5, "path": "/etc/passwd"});
    // Every counter a condition reads has been used a little.
    let counters: warden_policy::CounterValues = compiled
        .counters_read()
        .iter()
        .map(|(name, _)| (name.clone(), 5))
        .collect();
    let names = [
        "read_file",
        "delete_instance",
        "x",
        "file:///etc/passwd",
        "sampling/createMessage",
    ];
    for (kind, tool) in warden_policy::Kind::ALL
        .iter()
        .flat_map(|k| names.iter().map(move |n| (*k, *n)))
    {
        let call = warden_policy::Call {
            kind,
            tool,
            args: Some(&args),
            grant: Some("alice"),
            session: Some("s"),
            ip: None,
            claims: None,
            counters: Some(&counters),
        };
        let _ = compiled.decide(&call);
        let _ = compiled.visible(&call);
    }
    let _ = warden_policy::to_policylayer_json(&policy, None);
});
