//! The RSTR and SOAP fault parsers on arbitrary bytes: never panic, and an
//! assertion, when found, is a slice of the input exactly as received.
#![no_main]

use akscredd::entra::wstrust::{RstrError, parse_fault, parse_rstr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_rstr(data) {
        Ok(rstr) => {
            let a = rstr.assertion.expose();
            assert!(a.starts_with('<') && a.ends_with('>'));
            // Invalid UTF-8 elsewhere is replaced, never inside the
            // assertion (it is UTF-8), so it must still be found.
            assert!(
                String::from_utf8_lossy(data).contains(a),
                "the assertion must be cut from the input, not rebuilt"
            );
        }
        Err(RstrError::Fault(f)) => {
            // The same document read as a fault gives the same fault.
            assert_eq!(parse_fault(data), Some(f));
        }
        Err(_) => {}
    }
    let _ = parse_fault(data);
});
