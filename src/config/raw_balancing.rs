//! The raw YAML schema of an upstream's balancing keys: `balancer` (a policy name or a
//! mapping with `policy` and its knobs) and `sticky`.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// `balancer: least_requests` or `balancer: { policy: consistent_hash, key: header, ... }`.
#[derive(Debug)]
pub enum RawBalancer {
    Name(String),
    Full(RawBalancerMap),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancerMap {
    pub policy: Option<String>,
    pub key: Option<String>,
    pub name: Option<String>,
    pub fallback: Option<String>,
    pub virtual_nodes: Option<u32>,
    pub decay: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub cookie: Option<String>,
    pub ttl: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
}

impl<'de> Deserialize<'de> for RawBalancer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BalancerVisitor;
        impl<'de> Visitor<'de> for BalancerVisitor {
            type Value = RawBalancer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a policy name like least_requests or a mapping with `policy`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawBalancer::Name(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawBalancerMap::deserialize(MapAccessDeserializer::new(map)).map(RawBalancer::Full)
            }
        }
        deserializer.deserialize_any(BalancerVisitor)
    }
}
