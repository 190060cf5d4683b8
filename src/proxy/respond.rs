//! Responses Portico makes itself: errors with a short plain-text reason, direct responses
//! and redirects configured as route actions.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// A plain-text error answer: `reason` plus a newline, so curl output stays readable.
pub fn error(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let mut body = String::with_capacity(reason.len() + 1);
    body.push_str(reason);
    body.push('\n');
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A configured direct response.
pub fn direct(
    status: StatusCode,
    body: &Bytes,
    headers: &[(HeaderName, HeaderValue)],
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body.clone()));
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    for (name, value) in headers {
        map.append(name.clone(), value.clone());
    }
    if !map.contains_key(header::CONTENT_TYPE) && !body.is_empty() {
        map.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    resp
}

/// A configured redirect; `suffix` is the request's path and query when the route keeps them.
pub fn redirect(status: StatusCode, location: &str, suffix: Option<&str>) -> Response<ProxyBody> {
    let target = match suffix {
        Some(s) => format!("{}{}", location.trim_end_matches('/'), s),
        None => location.to_owned(),
    };
    match HeaderValue::from_str(&target) {
        Ok(value) => {
            let mut resp = Response::new(ProxyBody::empty());
            *resp.status_mut() = status;
            resp.headers_mut().insert(header::LOCATION, value);
            resp
        }
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            "redirect target is not a valid header",
        ),
    }
}
