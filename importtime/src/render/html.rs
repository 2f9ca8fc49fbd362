//! The `--html` page: `assets/report.html` with the report's JSON in place of its
//! placeholder. No network: the page has everything inline.

use crate::Report;

const TEMPLATE: &str = include_str!("../../assets/report.html");
const PLACEHOLDER: &str = "/*PPYC_DATA*/null";

/// The page for a report.
pub fn html(report: &Report) -> String {
    let json = serde_json::to_string(report).expect("a report always serialises");
    // Inside <script>, the data must not close the element or open a comment (JSON strings
    // hold anything a module name or a command line holds): `<` only occurs inside strings,
    // where `\u003c` means the same to JSON and to JavaScript.
    let safe = json
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    TEMPLATE.replacen(PLACEHOLDER, &safe, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_has_one_placeholder_and_no_network() {
        assert_eq!(TEMPLATE.matches(PLACEHOLDER).count(), 1);
        for needle in ["http://", "https://", "//cdn", "<link "] {
            assert!(
                !TEMPLATE.contains(needle),
                "the page must be self-contained: {needle}"
            );
        }
    }
}
