//! The MEX parser on arbitrary bytes: never panics, never hangs, and only
//! ever offers https endpoints, 1.3 before 2005.
#![no_main]

use akscredd::entra::mex::{WsTrustVersion, endpoints};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = endpoints(data) {
        assert!(!found.is_empty());
        for e in &found {
            // Parsed and serialised by the url crate: lower-case scheme,
            // no stray whitespace.
            assert!(e.url.starts_with("https://"), "{}", e.url);
            assert!(!e.url.contains(char::is_whitespace), "{}", e.url);
        }
        assert!(
            found.windows(2).all(|w| w[0].version <= w[1].version),
            "1.3 before 2005"
        );
        let _ = found.iter().any(|e| e.version == WsTrustVersion::V13);
    }
});
