//! `warden replay` at scale: 100,000 recorded calls against a 416-tool policy.
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/replay_load
//! ```
//!
//! The policy is generated like a real server's catalog (`verb_noun` names; every 4th tool
//! limited, every 7th with a condition, `list_*`/`get_*` by glob, `delete_*` hidden); the
//! recording calls those tools round-robin from 20 grants over ten simulated minutes. The
//! baseline, in the same run, is reading the same file and parsing each line as JSON in
//! this process: the least any replay must do.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const TOOLS: usize = 416;
const CALLS: usize = 100_000;

fn main() -> Result<(), String> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("warden")))
        .filter(|p| p.exists())
        .ok_or("target/release/warden missing: cargo build --release -p warden-cli")?;
    let dir = std::env::temp_dir().join(format!("warden-replay-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let verbs = [
        "list", "get", "create", "update", "delete", "attach", "resize", "clone",
    ];
    let nouns = [
        "instance", "volume", "domain", "record", "bucket", "firewall", "node", "image", "token",
        "user", "ip", "disk", "backup",
    ];
    let mut names = Vec::new();
    'outer: for v in verbs {
        for n in nouns {
            for k in 0.. {
                names.push(format!("{v}_{n}_{k}"));
                if names.len() == TOOLS {
                    break 'outer;
                }
                if k == 3 {
                    break;
                }
            }
        }
    }
    while names.len() < TOOLS {
        names.push(format!("extra_tool_{}", names.len()));
    }
    let mut pol = String::from("version 1\ndefault deny\nhide [delete_*]\nallow list_*, get_*\n");
    for (i, n) in names.iter().enumerate() {
        if n.starts_with("list_") || n.starts_with("get_") || n.starts_with("delete_") {
            continue;
        }
        pol.push_str(&format!("\ntool {n} {{\n"));
        if i % 7 == 0 {
            pol.push_str("  require args.region in [\"eu\", \"us\"] else \"EU or US only\"\n");
        }
        if i % 4 == 0 {
            pol.push_str(&format!("  limit 30 per minute per grant as c{i}\n"));
        }
        pol.push_str("}\n");
    }
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, pol).map_err(|e| e.to_string())?;
    let record = dir.join("calls.jsonl");
    {
        let f = std::fs::File::create(&record).map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::new(f);
        for i in 0..CALLS {
            let tool = &names[i % TOOLS];
            let line = serde_json::json!({
                "at_ms": 1_000 + (i as u64) * 6,
                "grant": format!("agent{}", i % 20),
                "tool": tool,
                "args": {"region": if i % 3 == 0 { "mars" } else { "eu" }, "n": i},
                "decision": "allow",
                "rule": format!("/tools/{tool}"),
            });
            writeln!(w, "{line}").map_err(|e| e.to_string())?;
        }
    }
    let size = std::fs::metadata(&record).map(|m| m.len()).unwrap_or(0);

    let time = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<f64, String> {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            f()?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let baseline = time(&mut || {
        let text = std::fs::read_to_string(&record).map_err(|e| e.to_string())?;
        let mut n = 0;
        for line in text.lines() {
            let _: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
            n += 1;
        }
        (n == CALLS).then_some(()).ok_or("short file".into())
    })?;
    let replay = time(&mut || run(&bin, &policy, &record))?;
    println!(
        "{CALLS} recorded calls ({:.1} MB) against a {TOOLS}-tool policy; best of 3 runs\n",
        size as f64 / 1e6
    );
    println!("| case | time | ratio to baseline | target |");
    println!("|---|---:|---:|---|");
    println!(
        "| baseline: read the file and parse each line as JSON (in process) | {:.0} ms | 1.0× | — |",
        baseline * 1e3
    );
    println!(
        "| `warden replay --policy policy.pol calls.jsonl` (whole process) | {:.0} ms | {:.1}× | ≤ 1 s {} |",
        replay * 1e3,
        replay / baseline,
        if replay <= 1.0 { "✅" } else { "❌" }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn run(bin: &Path, policy: &Path, record: &Path) -> Result<(), String> {
    let out = Command::new(bin)
        .arg("replay")
        .arg("--policy")
        .arg(policy)
        .arg(record)
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.starts_with(&format!("{CALLS} recorded calls")) {
        return Err(format!(
            "replay failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}
