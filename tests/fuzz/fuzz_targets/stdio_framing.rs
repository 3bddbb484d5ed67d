//! `warden stdio`'s line reader over arbitrary input and read sizes: every byte is accounted
//! for, a line within the limit comes out whole, a longer one is reported with its length
//! and never buffered whole.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use warden_gateway::framing::{Line, next_line};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(max) = u.int_in_range(1usize..=64) else {
        return;
    };
    let Ok(buf_size) = u.int_in_range(1usize..=16) else {
        return;
    };
    let Ok(input) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let reader = tokio::io::BufReader::with_capacity(buf_size, &input[..]);
    let lines = runtime().block_on(async move {
        let mut reader = reader;
        let mut out = Vec::new();
        while let Some(line) = next_line(&mut reader, max).await.expect("read from memory") {
            out.push(line);
        }
        out
    });
    let expected: Vec<&[u8]> = input.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), expected.len(), "one result per line");
    for (got, want) in lines.iter().zip(expected) {
        // Line ends (and CRs before them) are JSON whitespace; the rest must be kept.
        let mut body = want;
        while let [rest @ .., b'\n' | b'\r'] = body {
            body = rest;
        }
        match got {
            Line::Message(m) => {
                assert!(m.len() <= max, "a line over the limit came out whole");
                assert_eq!(&m[..], body, "a line came out changed");
            }
            Line::TooLong { bytes, .. } => {
                assert!(
                    body.len() > max || want.len() > max + 2,
                    "a line within the limit was refused"
                );
                assert_eq!(*bytes, want.len(), "the reported length");
            }
        }
    }
});
