//! The alert search syntax on any text: never panics; either a query that renders back into
//! text parsing to the same query, or an error whose position is inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_core::search;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match search::parse(s) {
        Ok(q) => {
            let rendered = q.to_string();
            assert_eq!(
                search::parse(&rendered),
                Ok(q),
                "{s:?} rendered as {rendered:?}"
            );
        }
        Err(e) => {
            assert!(e.position <= s.chars().count(), "{s:?}: {e}");
            assert!(!e.message.is_empty());
        }
    }
});
