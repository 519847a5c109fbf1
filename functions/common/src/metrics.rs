//! CloudWatch embedded metric format (EMF): one JSON line per metric on stdout,
//! which Lambda's log pipeline turns into metrics without an API call or a
//! client at init. Dimensions are low-cardinality (`provider`, `direction`,
//! `reason`); tenant and session go in as plain properties so a metric line can
//! be found from a log search without paying for a dimension per tenant.
//!
//! Spec: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//! (`_aws.Timestamp`, `_aws.CloudWatchMetrics[].{Namespace,Dimensions,Metrics}`,
//! each dimension and metric a top-level member).

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::domain::IntegrationKey;
use crate::time::now_ms;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ChatHandoff";

/// The metrics the relay emits, with their unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    HandoffStarted,
    HandoffFailed,
    /// `direction`: `to_agent` (customer -> platform) or `to_customer`.
    MessageRelayed,
    /// `reason`: the error code answered (`unauthenticated`, `malformed`, ...).
    WebhookRejected,
    /// A failed push of a client event that will be tried again.
    DeliveryRetry,
    /// Milliseconds from the handoff's start to the first agent joining.
    TimeToAgentJoin,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::HandoffStarted => "HandoffsStarted",
            Self::HandoffFailed => "HandoffsFailed",
            Self::MessageRelayed => "MessagesRelayed",
            Self::WebhookRejected => "WebhookRejects",
            Self::DeliveryRetry => "DeliveryRetries",
            Self::TimeToAgentJoin => "TimeToAgentJoin",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::TimeToAgentJoin => "Milliseconds",
            _ => "Count",
        }
    }
}

/// One metric value with its dimensions and context properties.
#[derive(Debug, Clone)]
pub struct Record {
    metric: Metric,
    value: f64,
    dimensions: Vec<(&'static str, String)>,
    properties: Vec<(&'static str, String)>,
}

impl Record {
    pub fn new(metric: Metric, value: f64) -> Self {
        Self {
            metric,
            value,
            dimensions: Vec::new(),
            properties: Vec::new(),
        }
    }

    pub fn count(metric: Metric) -> Self {
        Self::new(metric, 1.0)
    }

    pub fn provider(self, provider: IntegrationKey) -> Self {
        self.dimension("provider", provider.as_str())
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// A searchable property that is not a dimension (tenant, session).
    pub fn property(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The EMF document for this record at `timestamp_ms`.
    pub fn to_emf(&self, timestamp_ms: i64) -> Value {
        let mut doc = Map::new();
        let names: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [names],
                    "Metrics": [{"Name": self.metric.name(), "Unit": self.metric.unit()}],
                }],
            }),
        );
        for (name, value) in self.properties.iter().chain(&self.dimensions) {
            doc.insert((*name).into(), Value::String(value.clone()));
        }
        doc.insert(self.metric.name().into(), json!(self.value));
        Value::Object(doc)
    }

    /// Writes the record as one stdout line (skipped when `METRICS=off`).
    pub fn emit(self) {
        if std::env::var("METRICS").is_ok_and(|v| v == "off") {
            return;
        }
        let line = self.to_emf(now_ms()).to_string();
        // One locked write per line so concurrent tasks never interleave.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_names_its_dimensions_and_metric() {
        let doc = Record::count(Metric::MessageRelayed)
            .provider(IntegrationKey::Zendesk)
            .dimension("direction", "to_agent")
            .property("tenant", "acme/support/live")
            .to_emf(1_700_000_000_000);
        let aws = &doc["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "ChatHandoff");
        assert_eq!(directive["Dimensions"], json!([["provider", "direction"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "MessagesRelayed", "Unit": "Count"}])
        );
        // Every dimension named in the directive is a top-level member (EMF rule).
        assert_eq!(doc["provider"], "zendesk_integration");
        assert_eq!(doc["direction"], "to_agent");
        assert_eq!(doc["tenant"], "acme/support/live");
        assert_eq!(doc["MessagesRelayed"], 1.0);
    }

    #[test]
    fn time_to_join_is_in_milliseconds() {
        let doc = Record::new(Metric::TimeToAgentJoin, 1234.0)
            .provider(IntegrationKey::Genesys)
            .to_emf(0);
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(doc["TimeToAgentJoin"], 1234.0);
    }
}
