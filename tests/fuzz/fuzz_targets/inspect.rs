//! Raw bytes as a POST body: the gate refuses it, or reads exactly the calls serde_json reads.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::same_reading(data);
});
