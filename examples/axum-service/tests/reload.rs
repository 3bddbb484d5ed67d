//! The example service as a user runs it: started with a policy, which is edited while it
//! serves; a valid edit applies, an invalid one is refused and the policy in force stays.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Service(std::process::Child);
impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status(addr: &str, method: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Waits (10 s at most) until `path` answers `want`.
fn eventually(addr: &str, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = status(addr, "GET", path);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: {got}, waited for {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_policy_is_edited_while_the_service_runs() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-example-axum-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        "version 1\ndefault deny\ntool \"GET /items/{id}\" { }\n",
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_warden-example-axum"))
        .arg(&policy)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let service = Service(child);
    let url = lines.next().unwrap().unwrap();
    let addr = url.trim_start_matches("listening on http://").to_owned();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });

    assert_eq!(status(&addr, "GET", "/items/1"), 200);
    assert_eq!(status(&addr, "DELETE", "/items/1"), 403);

    // An edit that denies the read: applied without a restart.
    std::fs::write(&policy, "version 1\ndefault deny\n").unwrap();
    eventually(&addr, "/items/1", 403);

    // An invalid edit: refused and logged, the policy in force stays.
    std::fs::write(&policy, "version 1\ndefualt allow\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("new policy refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        log.lock().unwrap().contains(":2:1"),
        "{}",
        log.lock().unwrap()
    );
    assert_eq!(status(&addr, "GET", "/items/1"), 403);

    // And back.
    std::fs::write(
        &policy,
        "version 1\ndefault deny\ntool \"GET /items/{id}\" { }\n",
    )
    .unwrap();
    eventually(&addr, "/items/1", 200);
    drop(service);
}
