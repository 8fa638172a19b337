//! The docs name code locations as `path:LINE` (`symbol`); each must still hold its symbol.
//! `scripts/update-doc-anchors` rewrites the line numbers after code moves.

use std::path::Path;

#[test]
fn lifecycle_doc_anchors_point_at_their_symbols() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/LIFECYCLE.md")).expect("read LIFECYCLE.md");
    let mut checked = 0;
    let mut stale = Vec::new();
    for (start, _) in doc.match_indices("`src/") {
        let rest = &doc[start + 1..];
        let Some((location, after)) = rest.split_once("` (`") else {
            continue;
        };
        let Some((symbol, _)) = after.split_once("`)") else {
            continue;
        };
        let Some((path, line)) = location.split_once(':') else {
            continue;
        };
        let line: usize = line.parse().expect("line number");
        let source = std::fs::read_to_string(root.join(path)).expect("anchored file exists");
        let text = source.lines().nth(line - 1).unwrap_or("");
        if !text.contains(symbol) {
            stale.push(format!("{path}:{line} does not hold `{symbol}`"));
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} anchors found");
    assert!(
        stale.is_empty(),
        "stale anchors (run scripts/update-doc-anchors):\n{}",
        stale.join("\n")
    );
}
