//! The `Via` element this proxy adds (RFC 9110 §7.6.3), rendered once per configuration
//! instead of once per message.

use http::{HeaderValue, Version};

/// The pseudonym from `settings.via` and its element per protocol version.
#[derive(Debug, Clone)]
pub struct Via {
    pseudonym: String,
    /// HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3; `None` only if the pseudonym were not a token.
    rendered: [Option<HeaderValue>; 4],
}

impl Via {
    pub fn new(pseudonym: &str) -> Via {
        let render = |version| {
            let text = format!("{} {pseudonym}", protocol(version));
            // A boxed slice becomes a shared buffer on its first clone; every message's
            // copy after that is a reference count.
            HeaderValue::from_maybe_shared(bytes::Bytes::from(text.into_bytes().into_boxed_slice()))
                .ok()
        };
        Via {
            pseudonym: pseudonym.to_owned(),
            rendered: [
                render(Version::HTTP_10),
                render(Version::HTTP_11),
                render(Version::HTTP_2),
                render(Version::HTTP_3),
            ],
        }
    }

    /// The pseudonym as configured.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// "1.1 portico" for `version`, as text.
    pub fn text(&self, version: Version) -> String {
        format!("{} {}", protocol(version), self.pseudonym)
    }

    /// "1.1 portico" for `version`, as a header value.
    pub fn element(&self, version: Version) -> HeaderValue {
        let slot = match version {
            Version::HTTP_10 => 0,
            Version::HTTP_2 => 2,
            Version::HTTP_3 => 3,
            Version::HTTP_11 => 1,
            _ => usize::MAX,
        };
        match self.rendered.get(slot) {
            Some(Some(value)) => value.clone(),
            // HTTP/0.9, which hyper does not accept anyway.
            _ => HeaderValue::from_str(&self.text(version))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 portico")),
        }
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}
