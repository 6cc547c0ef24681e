//! Printing: one small encoder per output format behind `Format`, all
//! writing into a caller-owned buffer that is reused between gathers. The
//! encoders read what a metric is from its [`crate::metric::Schema`] and
//! never name a measurement.

mod influx;
mod json;
mod prometheus;

use std::time::SystemTime;

use crate::metric::{Family, Metric};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Influx line protocol, integer fields, as `inputs.netstat` emits.
    Influx,
    /// Prometheus text exposition format 0.0.4, with Telegraf's names.
    Prometheus,
    /// The same format, with names after Prometheus practice
    /// (`--prometheus-names native`).
    PrometheusNative,
    /// One JSON object per metric per line, like Telegraf's serializer.
    Json,
}

impl Format {
    /// Whether the format always carries a timestamp (JSON does, like
    /// Telegraf's serializer; influx only with `--timestamp`).
    pub fn always_stamped(self) -> bool {
        self == Format::Json
    }

    /// Either Prometheus naming.
    pub fn is_prometheus(self) -> bool {
        matches!(self, Format::Prometheus | Format::PrometheusNative)
    }

    /// Appends the encoding of `metrics` to `out`.
    pub fn encode(self, metrics: &[Metric<'_>], out: &mut Vec<u8>) {
        match self {
            Format::Influx => influx::encode(metrics, out),
            Format::Prometheus => prometheus::encode(metrics, out),
            Format::PrometheusNative => prometheus::encode_native(metrics, out),
            Format::Json => json::encode(metrics, out),
        }
    }

    /// Appends `families` (the self-metrics), stamped with `time`, in the
    /// Prometheus formats; the others print rows only.
    pub fn encode_families(
        self,
        families: &[Family<'_>],
        time: Option<SystemTime>,
        out: &mut Vec<u8>,
    ) {
        if self.is_prometheus() {
            prometheus::encode_families(families, time, out);
        }
    }
}
