//! What the loader reports: located diagnostics, the error type of `load`/`parse_str`, and the
//! "did you mean" helper shared by every check that resolves a name.

use std::fmt;
use std::path::PathBuf;

/// How bad a diagnostic is: errors reject the config, warnings are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found in a config file, located by line/column (1-based; 0 = unknown) and by
/// key path such as `routes[2].upstream` (empty when it concerns the whole document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}: ", self.severity)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Why no configuration could be produced.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", DiagnosticLines(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

/// Renders diagnostics one per line, as `ConfigError::Invalid` displays them.
struct DiagnosticLines<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The candidate closest to `wrong`, if it is close enough to be a plausible typo.
pub fn suggest<'a, I>(wrong: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    // A third of the length (at least 1) catches a dropped, doubled or swapped letter without
    // proposing unrelated names for short inputs.
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an insertion, deletion, substitution or swap of two neighbouring
/// letters as one edit (optimal string alignment). Written out because config names are short
/// and ~20 lines do not justify a dependency; swaps count once because "wbe" is a typo of "web".
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let substitute = prev[j] + usize::from(a[i] != b[j]);
            let mut best = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                best = best.min(before[j - 1] + 1);
            }
            cur[j + 1] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn diag(line: u64, column: u64, path: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: "config.yaml".into(),
            line,
            column,
            path: path.into(),
            message: "no upstream named \"apii\"; did you mean \"api\"?".into(),
        }
    }

    #[test]
    fn display_with_and_without_location() {
        assert_eq!(
            diag(12, 15, "routes[2].upstream").to_string(),
            "config.yaml:12:15: error: routes[2].upstream: no upstream named \"apii\"; did you mean \"api\"?"
        );
        assert_eq!(
            diag(0, 0, "routes").to_string(),
            "config.yaml: error: routes: no upstream named \"apii\"; did you mean \"api\"?"
        );
        let mut w = diag(3, 1, "");
        w.severity = Severity::Warning;
        w.message = "m".into();
        assert_eq!(w.to_string(), "config.yaml:3:1: warning: m");
    }

    #[test]
    fn invalid_lists_every_diagnostic_on_its_own_line() {
        let err = ConfigError::Invalid {
            diagnostics: vec![diag(1, 2, "a"), diag(3, 4, "b")],
        };
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("config.yaml:1:2: error: a: "));
        assert!(lines[1].starts_with("config.yaml:3:4: error: b: "));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("api", "api"), 0);
        assert_eq!(edit_distance("apii", "api"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("wbe", "web"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("ca", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let names = ["api", "web", "static"];
        assert_eq!(suggest("apii", names), Some("api"));
        assert_eq!(suggest("statc", names), Some("static"));
        assert_eq!(suggest("database", names), None);
        assert_eq!(suggest("x", ["y"]), Some("y"));
    }
}
