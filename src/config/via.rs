//! The `Via` element this proxy adds (RFC 9110 §7.6.3), rendered once per configuration
//! instead of once per message.

use http::{HeaderValue, Version};

/// The versions whose element is rendered ahead; others (HTTP/0.9) are formatted when met.
const RENDERED: [Version; 4] = [
    Version::HTTP_10,
    Version::HTTP_11,
    Version::HTTP_2,
    Version::HTTP_3,
];

/// The pseudonym from `settings.via` and its element per protocol version.
#[derive(Debug, Clone)]
pub struct Via {
    pseudonym: String,
    /// In the order of `RENDERED`; `None` only if the pseudonym were not a token.
    rendered: [Option<HeaderValue>; 4],
}

impl Via {
    pub fn new(pseudonym: &str) -> Via {
        let mut via = Via {
            pseudonym: pseudonym.to_owned(),
            rendered: Default::default(),
        };
        for (slot, version) in via.rendered.iter_mut().zip(RENDERED) {
            // A boxed slice becomes a shared buffer on its first clone; every message's
            // copy after that is a reference count.
            let text = format!("{} {pseudonym}", protocol(version));
            *slot = HeaderValue::from_maybe_shared(bytes::Bytes::from(
                text.into_bytes().into_boxed_slice(),
            ))
            .ok();
        }
        via
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
        let rendered = RENDERED
            .iter()
            .position(|v| *v == version)
            .and_then(|i| self.rendered.get(i).cloned().flatten());
        // The pseudonym is a validated token, so the text is always a valid value.
        rendered.unwrap_or_else(|| {
            HeaderValue::from_str(&self.text(version))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 portico"))
        })
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
