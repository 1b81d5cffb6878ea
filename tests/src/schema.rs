//! macdrop's JSON checked against its published schemas (docs/schema/):
//! every test that reads a `watch` line, a `status` or a `diagnose`
//! document goes through here, so a field the renderer adds, renames or
//! types differently from the schema fails the test that saw it.

use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use serde_json::Value;

/// Which output, and so which schema.
#[derive(Clone, Copy, Debug)]
pub enum Output {
    Watch,
    Status,
    Diagnose,
}

impl Output {
    fn file(self) -> &'static str {
        match self {
            Output::Watch => "watch.json",
            Output::Status => "status.json",
            Output::Diagnose => "diagnose.json",
        }
    }

    /// The schema's text, built in: the kernel matrix's guest runs this
    /// library where the repository is not.
    fn text(self) -> &'static str {
        match self {
            Output::Watch => include_str!("../../docs/schema/watch.json"),
            Output::Status => include_str!("../../docs/schema/status.json"),
            Output::Diagnose => include_str!("../../docs/schema/diagnose.json"),
        }
    }

    #[cfg(feature = "schema")]
    fn validator(self) -> &'static jsonschema::Validator {
        static VALIDATORS: [OnceLock<jsonschema::Validator>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        VALIDATORS[self as usize].get_or_init(|| {
            let schema: Value = serde_json::from_str(self.text())
                .unwrap_or_else(|e| panic!("docs/schema/{}: {e}", self.file()));
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("docs/schema/{}: not a valid schema: {e}", self.file()))
        })
    }
}

/// Checks `doc` against the schema of `output`: every violation, with its
/// place in the document.
#[cfg(feature = "schema")]
pub fn check(output: Output, doc: &Value) -> Result<()> {
    let errors: Vec<String> = output
        .validator()
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!(
            "does not follow docs/schema/{}: {}",
            output.file(),
            errors.join("; ")
        );
    }
    Ok(())
}

/// Without the `schema` feature (xtask's labs) nothing is checked.
#[cfg(not(feature = "schema"))]
pub fn check(output: Output, _doc: &Value) -> Result<()> {
    let _ = (output.file(), output.text(), OnceLock::<()>::new());
    Ok(())
}

/// Parses `text` as one document of `output` and checks it.
pub fn parse(output: Output, text: &str) -> Result<Value> {
    let doc: Value =
        serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;
    check(output, &doc).with_context(|| text.trim().to_owned())?;
    Ok(doc)
}

#[cfg(all(test, feature = "schema"))]
mod tests {
    use serde_json::json;

    use super::*;

    fn status() -> Value {
        json!({"schema": "macdrop/1", "ts": "2026-12-05T15:23:27.367Z",
               "hypervisor": null, "interfaces": [], "findings": []})
    }

    #[test]
    fn a_document_must_follow_its_schema_exactly() {
        check(Output::Status, &status()).unwrap();
        let mut extra = status();
        extra["surprise"] = json!(1);
        let err = check(Output::Status, &extra).unwrap_err().to_string();
        assert!(err.contains("surprise"), "{err}");
        let mut old = status();
        old["schema"] = json!("macdrop/0");
        assert!(check(Output::Status, &old).is_err());
        let mut bad_ts = status();
        bad_ts["ts"] = json!("yesterday");
        assert!(check(Output::Status, &bad_ts).is_err());
        // The other two schemas load and refuse an empty object.
        assert!(check(Output::Watch, &json!({})).is_err());
        assert!(check(Output::Diagnose, &json!({})).is_err());
    }
}
