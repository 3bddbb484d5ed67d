//! The gateway's own HTTP/1.1 reading: request heads and chunked bodies.
//!
//! - A head that is accepted took no more bytes than it was given, and its framing agrees
//!   with its headers: a length only without `Transfer-Encoding`, chunked only with it and
//!   never with a `Content-Length` (the request-smuggling class).
//! - A chunked body decodes to the same bytes and the same verdict however its input is
//!   cut, never yields more bytes than it was given, and what it decoded, encoded again,
//!   decodes to itself.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use warden_gateway::http1::chunked::{self, Decoder, Step};
use warden_gateway::http1::fuzzing::request_head;

/// Decodes `input` fed in pieces of `cuts` (cycled); the data and how it ended.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<u8>, Result<bool, String>) {
    let mut d = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = cuts.get(i % cuts.len().max(1)).copied().unwrap_or(input.len()).max(1);
        let end = (at + n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        i += 1;
        loop {
            match d.decode(&mut buf) {
                Ok(Step::Data(b)) => out.extend_from_slice(&b),
                Ok(Step::NeedMore) => break,
                Ok(Step::Done) => return (out, Ok(true)),
                Err(e) => return (out, Err(e.to_string())),
            }
        }
    }
    (out, Ok(false))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(head) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    if let Ok(Some((used, framing, length, chunked))) = request_head(&head) {
        assert!(used <= head.len());
        if framing.starts_with("Length") {
            assert!(length && !chunked, "{framing} with the headers {length} {chunked}");
        }
        if framing == "Chunked" {
            assert!(chunked && !length, "chunked with a Content-Length");
        }
        if framing == "Empty" {
            assert!(!length && !chunked);
        }
    }

    let Ok(body) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let Ok(cuts) = Vec::<u8>::arbitrary(&mut u) else {
        return;
    };
    let cuts: Vec<usize> = cuts.into_iter().map(usize::from).collect();
    let (whole, verdict) = decode(&body, &[body.len().max(1)]);
    let (pieces, verdict_cut) = decode(&body, &cuts);
    assert!(whole.len() <= body.len());
    match (&verdict, &verdict_cut) {
        // A refusal may come earlier or later in the data, but it comes either way.
        (Err(_), Err(_)) => {}
        _ => {
            assert_eq!(verdict, verdict_cut, "the verdict depends on the cuts");
            assert_eq!(whole, pieces, "the data depends on the cuts");
        }
    }
    if verdict == Ok(true) {
        let mut again = Vec::new();
        chunked::encode(&whole, &mut again);
        again.extend_from_slice(chunked::END);
        let (back, end) = decode(&again, &[7]);
        assert_eq!(end, Ok(true));
        assert_eq!(back, whole);
    }
});
