//! The tree spec parser: any input parses or is rejected with a position
//! inside the input; what parses prints back to a spec that parses to the
//! same tree, within the limits.
#![no_main]

use childfd_testbin::tree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    match tree::parse(s) {
        Ok(n) => {
            assert!(n.count() <= 64);
            let again = tree::parse(&n.to_string()).expect("printed spec parses");
            assert_eq!(again, n);
        }
        Err(e) => assert!(e.at <= s.len(), "error position {} beyond {}", e.at, s.len()),
    }
});
