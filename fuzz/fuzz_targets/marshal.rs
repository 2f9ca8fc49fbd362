//! The marshal reader (`ppyc_compiler::marshal`): arbitrary bytes as a `.pyc` body of each
//! supported CPython version (the first byte chooses it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppyc_compiler::marshal::{self, PyVersion};

const VERSIONS: [PyVersion; 5] = [
    PyVersion::V3_10,
    PyVersion::V3_11,
    PyVersion::V3_12,
    PyVersion::V3_13,
    PyVersion::V3_14,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let version = VERSIONS[usize::from(first) % VERSIONS.len()];
    match marshal::parse(body, version) {
        Ok(obj) => {
            let _ = marshal::summary(&obj);
            let _ = marshal::set_element_key(&obj);
            assert!(marshal::parse_annotated(body, version).is_ok());
            let valid = marshal::validate(body, version).is_ok();
            assert_eq!(valid, matches!(obj, marshal::Object::Code(_)));
        }
        Err(_) => {
            assert!(marshal::validate(body, version).is_err());
            assert!(!marshal::same_code(body, body, version));
        }
    }
});
