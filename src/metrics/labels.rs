//! Label sets of Portico's metric families.

use prometheus_client::encoding::EncodeLabelSet;

/// `listener`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

impl ListenerLabels {
    pub fn new(listener: &str) -> Self {
        Self {
            listener: listener.to_owned(),
        }
    }
}

/// `listener`, `route` ("-" when no route matched).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub listener: String,
    pub route: String,
}

impl RouteLabels {
    pub fn new(listener: &str, route: &str) -> Self {
        Self {
            listener: listener.to_owned(),
            route: route.to_owned(),
        }
    }
}

/// `listener`, `route`, `class` ("2xx" ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: String,
    pub route: String,
    pub class: &'static str,
}

impl RequestLabels {
    pub fn new(route: &RouteLabels, class: &'static str) -> Self {
        Self {
            listener: route.listener.clone(),
            route: route.route.clone(),
            class,
        }
    }
}

/// `upstream`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

/// `upstream`, `backend` (its address).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub upstream: String,
    pub backend: String,
}

impl BackendLabels {
    pub fn new(upstream: &str, backend: impl ToString) -> Self {
        Self {
            upstream: upstream.to_owned(),
            backend: backend.to_string(),
        }
    }
}

/// `upstream`, `backend`, `kind` (from `UpstreamError::kind()`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub backend: String,
    pub kind: &'static str,
}

impl UpstreamErrorLabels {
    pub fn new(backend: &BackendLabels, kind: &'static str) -> Self {
        Self {
            upstream: backend.upstream.clone(),
            backend: backend.backend.clone(),
            kind,
        }
    }
}

/// `listener`, `kind` (websocket, tcp, tls_passthrough).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TunnelLabels {
    pub listener: String,
    pub kind: &'static str,
}

/// `listener`, `direction` (in, out).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub listener: String,
    pub direction: &'static str,
}

/// `listener`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsFailureLabels {
    pub listener: String,
    pub reason: &'static str,
}

/// `outcome` (ok, error).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

/// `listener`, `file`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub listener: String,
    pub file: String,
}
