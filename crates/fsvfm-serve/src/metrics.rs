//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of requests by route and status,
//! latency histograms by route, queue depth, batch sizes and faces scored.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; buckets.len()];
        }
        for (c, &b) in self.counts.iter_mut().zip(buckets) {
            if v <= b {
                *c += 1;
            }
        }
        self.sum += v;
        self.n += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, &b) in buckets.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.n);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.n);
    }
}

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    batches: Mutex<Histogram>,
    faces: AtomicU64,
    jobs_started: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a counter lock leaves plain numbers behind: keep counting.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Counts a finished request to `route` (the matched path template) with `status`.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_default()
            .observe(&LATENCY_BUCKETS, seconds);
    }

    /// Counts one forward pass of `size` faces.
    pub fn batch(&self, size: usize) {
        lock(&self.batches).observe(&BATCH_BUCKETS, size as f64);
        self.faces.fetch_add(size as u64, Ordering::Relaxed);
    }

    /// Counts a started job.
    pub fn job(&self) {
        self.jobs_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Faces scored so far.
    pub fn faces_scored(&self) -> u64 {
        self.faces.load(Ordering::Relaxed)
    }

    /// The exposition text, with the gauges read now.
    pub fn render(&self, queue_depth: usize, jobs: usize, ready: bool) -> String {
        let mut out = String::new();
        out += "# HELP fsvfm_requests_total Requests answered, by route and status.\n";
        out += "# TYPE fsvfm_requests_total counter\n";
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "fsvfm_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out += "# HELP fsvfm_request_duration_seconds Request latency, by route.\n";
        out += "# TYPE fsvfm_request_duration_seconds histogram\n";
        for (route, h) in lock(&self.latency).iter() {
            h.render(
                &mut out,
                "fsvfm_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
                &LATENCY_BUCKETS,
            );
        }
        out += "# HELP fsvfm_batch_size Faces per forward pass.\n";
        out += "# TYPE fsvfm_batch_size histogram\n";
        lock(&self.batches).render(&mut out, "fsvfm_batch_size", "", &BATCH_BUCKETS);
        let gauges = [
            (
                "fsvfm_faces_scored_total",
                "counter",
                "Faces scored.",
                self.faces_scored() as f64,
            ),
            (
                "fsvfm_jobs_started_total",
                "counter",
                "Jobs accepted.",
                self.jobs_started.load(Ordering::Relaxed) as f64,
            ),
            (
                "fsvfm_queue_depth",
                "gauge",
                "Faces waiting to be scored.",
                queue_depth as f64,
            ),
            (
                "fsvfm_jobs",
                "gauge",
                "Jobs held (any status).",
                jobs as f64,
            ),
            (
                "fsvfm_ready",
                "gauge",
                "1 once the model is loaded.",
                f64::from(u8::from(ready)),
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_text_is_prometheus() {
        let m = Metrics::default();
        m.request("/v1/detect", 200, 0.02);
        m.request("/v1/detect", 200, 0.2);
        m.request("/v1/detect", 422, 0.001);
        m.batch(3);
        let t = m.render(2, 0, true);
        assert!(
            t.contains("fsvfm_requests_total{route=\"/v1/detect\",status=\"200\"} 2"),
            "{t}"
        );
        assert!(
            t.contains(
                "fsvfm_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"0.025\"} 2"
            ),
            "{t}"
        );
        assert!(
            t.contains("fsvfm_request_duration_seconds_bucket{route=\"/v1/detect\",le=\"+Inf\"} 3"),
            "{t}"
        );
        assert!(t.contains("fsvfm_batch_size_bucket{le=\"4\"} 1"), "{t}");
        assert!(t.contains("fsvfm_faces_scored_total 3\n"), "{t}");
        assert!(t.contains("fsvfm_queue_depth 2\n"), "{t}");
    }
}
