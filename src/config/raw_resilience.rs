//! The raw YAML schema of an upstream's resilience keys: `discovery`, `health_check`,
//! `outlier_detection`, `retries`, `limits`.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    pub resolver: Option<String>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub statuses: Option<Vec<u16>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub slow_start: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejected_percent: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetries {
    pub attempts: Option<u32>,
    pub statuses: Option<Vec<u16>>,
    pub methods: Option<Vec<String>>,
    pub per_try_timeout: Option<String>,
    pub timeout: Option<String>,
    pub budget_percent: Option<u32>,
    pub budget_min_per_second: Option<u32>,
    pub replay_buffer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamLimits {
    pub max_connections: Option<usize>,
    pub max_pending: Option<usize>,
    pub max_connections_per_backend: Option<usize>,
    pub max_pending_per_backend: Option<usize>,
}
