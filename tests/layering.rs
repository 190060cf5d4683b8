//! Keeps the module layering of docs/architecture.md honest: a module may only import
//! modules of its own level or below (main uses only the public API).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// Top-level module -> level, as in docs/architecture.md.
fn level(module: &str) -> Option<u8> {
    Some(match module {
        "shutdown" | "config" | "body" | "net" | "metrics" => 0,
        "router" | "normalize" => 1,
        "tls" | "upstream" => 2,
        // `error` gathers startup failures of config, TLS and binding, so it sits above them.
        "state" | "error" => 3,
        "proxy" | "l4" | "lint" | "explain" => 4,
        "conn" | "listener" => 5,
        "admin" | "reload" | "upgrade" => 6,
        "server" => 7,
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeSet::new();
    let mut edges = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        let text = std::fs::read_to_string(file).unwrap();
        if module == "main" {
            assert!(
                !text.contains("crate::"),
                "main.rs must use the public API only"
            );
            continue;
        }
        let Some(own) = level(&module) else {
            if module != "lib" {
                violations.insert(format!("{} is not in the layer table", rel.display()));
            }
            continue;
        };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let target: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let Some(theirs) = level(&target) else {
                continue;
            };
            edges += 1;
            if theirs > own {
                violations.insert(format!(
                    "{} (level {own}) imports crate::{target} (level {theirs})",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        edges > 10,
        "the scan found too few imports ({edges}); is it broken?"
    );
    assert!(
        violations.is_empty(),
        "layering violations:\n{violations:#?}"
    );
}
