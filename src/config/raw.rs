//! The YAML schema as serde sees it: every key the file may contain, nothing interpreted yet.
//! Almost everything is optional here so that `validate` can report all missing or malformed
//! values at once instead of serde stopping at the first.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub settings: Option<RawSettings>,
    pub listeners: Option<Vec<RawListener>>,
    pub routes: Option<Vec<RawRoute>>,
    pub upstreams: Option<OrderedMap<RawUpstream>>,
    pub admin: Option<RawAdmin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub bind: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub trusted_proxies: Option<Vec<String>>,
    pub access_log: Option<bool>,
    pub grace_period: Option<String>,
    pub via: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub bind: Option<String>,
    pub mode: Option<String>,
    pub tls: Option<RawListenerTls>,
    pub limits: Option<RawLimits>,
    pub http2: Option<RawHttp2>,
    /// Layer 4 listeners only (`mode: tcp` / `tls_passthrough`).
    pub upstream: Option<String>,
    pub sni: Option<OrderedMap<String>>,
    pub proxy_protocol: Option<RawProxyProtocol>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyProtocol {
    pub send: Option<String>,
    pub accept_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    pub certificates: Option<Vec<RawCertPair>>,
    pub self_signed: Option<Vec<String>>,
    pub strict_sni_host: Option<bool>,
    pub handshake_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_connections: Option<usize>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_header_bytes: Option<String>,
    pub max_headers: Option<usize>,
    pub max_uri_length: Option<String>,
    pub max_tunnels: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    pub max_concurrent_streams: Option<u32>,
    pub max_pending_accept_reset_streams: Option<usize>,
    pub max_local_error_reset_streams: Option<usize>,
    pub max_header_list_size: Option<String>,
    pub enable_connect_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub listeners: Option<Vec<String>>,
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub upstream: Option<String>,
    pub respond: Option<RawRespond>,
    pub redirect: Option<RawRedirect>,
    pub max_body_size: Option<String>,
    pub host_header: Option<String>,
    pub websocket: Option<RawWebSocket>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    pub enabled: Option<bool>,
    pub idle_timeout: Option<String>,
    pub max_lifetime: Option<String>,
    pub max_tunnels: Option<usize>,
    pub drain_timeout: Option<String>,
    pub policy: Option<RawWebSocketPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocketPolicy {
    pub max_message_size: Option<String>,
    pub messages_per_second: Option<u32>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_subprotocols: Option<Vec<String>>,
    pub ping_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub host: Option<OneOrMany>,
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<OrderedMap<RawValueMatch>>,
    pub query: Option<OrderedMap<RawValueMatch>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub headers: Option<OrderedMap<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub to: Option<String>,
    pub status: Option<u16>,
    pub keep_path: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub servers: Option<Vec<RawServer>>,
    pub balancer: Option<super::raw_balancing::RawBalancer>,
    pub sticky: Option<super::raw_balancing::RawSticky>,
    pub protocol: Option<String>,
    pub tls: Option<RawUpstreamTls>,
    pub timeouts: Option<RawTimeouts>,
    pub max_idle_per_backend: Option<usize>,
    pub discovery: Option<super::raw_resilience::RawDiscovery>,
    pub health_check: Option<super::raw_resilience::RawHealthCheck>,
    pub outlier_detection: Option<super::raw_resilience::RawOutlier>,
    pub retries: Option<super::raw_resilience::RawRetries>,
    pub limits: Option<super::raw_resilience::RawUpstreamLimits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    pub ca: Option<String>,
    pub server_name: Option<String>,
    pub client_cert: Option<RawCertPair>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub response: Option<String>,
    pub idle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerMap {
    pub address: Option<String>,
    pub weight: Option<u32>,
}

/// A backend: `"127.0.0.1:9002"` or `{ address: ..., weight: ... }`.
#[derive(Debug)]
pub enum RawServer {
    Address(String),
    Full(RawServerMap),
}

/// A header/query condition: an exact value, or `{ regex: ... }` / `{ present: true }`.
#[derive(Debug)]
pub enum RawValueMatch {
    Exact(String),
    Condition(RawValueCondition),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValueCondition {
    pub regex: Option<String>,
    pub present: Option<bool>,
}

/// `host: a.example.com` or `host: [a.example.com, b.example.com]`.
#[derive(Debug, Default)]
pub struct OneOrMany(pub Vec<String>);

/// A YAML mapping whose keys are names chosen by the user, kept in file order (upstream indices
/// and response headers follow the order written).
#[derive(Debug)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Accepts the scalar forms YAML may produce for a value the user meant as text (`version: 2`).
macro_rules! scalar_as_text {
    ($wrap:expr) => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(v.to_owned()))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($wrap(v.to_string()))
        }
    };
}

impl<'de> Deserialize<'de> for RawServer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ServerVisitor;
        impl<'de> Visitor<'de> for ServerVisitor {
            type Value = RawServer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an address like \"127.0.0.1:9001\" or a mapping with `address`")
            }
            scalar_as_text!(RawServer::Address);
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawServerMap::deserialize(MapAccessDeserializer::new(map)).map(RawServer::Full)
            }
        }
        deserializer.deserialize_any(ServerVisitor)
    }
}

impl<'de> Deserialize<'de> for RawValueMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = RawValueMatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, `{ regex: ... }` or `{ present: true }`")
            }
            scalar_as_text!(RawValueMatch::Exact);
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawValueCondition::deserialize(MapAccessDeserializer::new(map))
                    .map(RawValueMatch::Condition)
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}
