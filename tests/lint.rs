//! `portico check` lints through the real binary: warnings with file:line:column and key
//! path, told apart from errors, exit code 0 when only warnings remain and 2 on errors.
#![allow(clippy::unwrap_used)]

mod common;

use common::run_portico;

fn check(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portico.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (code, text) = run_portico(&["check", "-c", path.to_str().unwrap()]);
    (
        code,
        text.replace(&path.display().to_string(), "portico.yaml"),
    )
}

const SAMPLE: &str = "listeners:
  - name: web
    bind: 127.0.0.1:8080
routes:
  - name: api
    match: { path_prefix: /api/ }
    upstream: app
  - name: users
    match: { path_prefix: /api/users, methods: [GET] }
    upstream: app
upstreams:
  app:
    servers: [\"127.0.0.1:9000\"]
    timeouts: { response: 1h }
  unused:
    servers: [\"127.0.0.1:9001\"]
";

#[test]
fn lints_are_warnings_with_positions_and_exit_zero() {
    let (code, text) = check(SAMPLE);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "portico.yaml:8:5: warning: routes[1]: route \"users\" is never reached: route \"api\""
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "warning: upstreams.app.timeouts.response: response timeout of 1h is very large"
        ),
        "{text}"
    );
    assert!(
        text.contains("warning: upstreams.unused: upstream \"unused\" is not used"),
        "{text}"
    );
    assert!(text.contains("OK (3 warnings)"), "{text}");
}

#[test]
fn errors_still_fail_the_check() {
    let (code, text) = check(&SAMPLE.replace(
        "upstream: app\n  - name: users",
        "upstream: apx\n  - name: users",
    ));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("error: routes[0].upstream: no upstream named \"apx\""),
        "{text}"
    );
}
