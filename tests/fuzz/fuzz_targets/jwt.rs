//! Bearer tokens from outside, against a fixed key set: verification never panics and never
//! accepts a token the key did not sign.
#![no_main]

use std::sync::OnceLock;

use warden_tower::jwt::{JwksSource, JwtConfig, JwtVerifier};

/// An RSA public key (no private half exists anywhere), so no input can carry a valid
/// signature: every token must be refused.
const JWKS: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}]}"#;

fn verifier() -> &'static JwtVerifier {
    static V: OnceLock<JwtVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let path =
            std::env::temp_dir().join(format!("warden-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&path, JWKS).expect("write jwks");
        let jwks = JwksSource::File(path);
        rt.block_on(JwtVerifier::new(JwtConfig::new(
            jwks,
            "https://idp.example",
            "warden",
        )))
        .expect("verifier")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = verifier().verify_now(text) {
        panic!("accepted a token nobody signed: {text} -> {v:?}");
    }
});
