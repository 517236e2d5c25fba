//! The Prometheus exposition of running sandboxes: their statuses in, the text format
//! (version 0.0.4) out, encoded by `prometheus-client`. Pure: it reads no file and opens no
//! socket (`cli/metrics.rs` gathers the statuses and serves the text). [`METRICS`] is the one
//! table of exported figures: the encoder, the `stockade metrics` help text, the README
//! check and the tests all read it. A figure that is unknown (its controller is missing, or
//! a limit is `max`) is left out for that sandbox, never exported as 0.

use super::status::{State, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// What the Prometheus type of a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    /// Only ever grows while the sandbox runs; its exported name ends in `_total`.
    Counter,
}

/// One figure of a sandbox, as it is exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

/// One exported metric: its full name (counters with `_total`), type, help line and where
/// its value comes from (None: unknown for this sandbox, so no sample).
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// Whether the value is fractional (seconds) or a whole number (bytes, counts).
    float: bool,
    value: fn(&Status) -> Option<Value>,
}

fn int(v: Option<u64>) -> Option<Value> {
    v.map(Value::Int)
}

fn usec(v: Option<u64>) -> Option<Value> {
    v.map(|us| Value::Float(us as f64 / 1e6))
}

/// Every metric but `stockade_sandbox_info` (which has labels of its own), in output order.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "stockade_memory_usage_bytes",
        kind: Kind::Gauge,
        help: "Memory the sandbox's cgroup uses now (memory.current)",
        float: false,
        value: |s| int(s.usage.as_ref()?.memory_bytes),
    },
    Metric {
        name: "stockade_memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The cgroup's memory limit (memory.max); absent when there is none",
        float: false,
        value: |s| int(s.usage.as_ref()?.memory_limit_bytes),
    },
    Metric {
        name: "stockade_memory_peak_bytes",
        kind: Kind::Gauge,
        help: "The most memory the cgroup has used (memory.peak, Linux 5.19)",
        float: false,
        value: |s| int(s.usage.as_ref()?.memory_peak_bytes),
    },
    Metric {
        name: "stockade_cpu_usage_seconds_total",
        kind: Kind::Counter,
        help: "CPU time the sandbox's processes have used (cpu.stat usage_usec)",
        float: true,
        value: |s| usec(s.usage.as_ref()?.cpu_usage_usec),
    },
    Metric {
        name: "stockade_cpu_throttled_seconds_total",
        kind: Kind::Counter,
        help: "Time the cgroup was throttled by its CPU quota (cpu.stat throttled_usec)",
        float: true,
        value: |s| usec(s.usage.as_ref()?.cpu_throttled_usec),
    },
    Metric {
        name: "stockade_tasks",
        kind: Kind::Gauge,
        help: "Processes and threads in the cgroup (pids.current)",
        float: false,
        value: |s| int(s.usage.as_ref()?.tasks),
    },
    Metric {
        name: "stockade_tasks_limit",
        kind: Kind::Gauge,
        help: "The cgroup's task limit (pids.max); absent when there is none",
        float: false,
        value: |s| int(s.usage.as_ref()?.tasks_limit),
    },
    Metric {
        name: "stockade_io_read_bytes_total",
        kind: Kind::Counter,
        help: "Bytes read from block devices, all devices summed (io.stat rbytes)",
        float: false,
        value: |s| int(s.usage.as_ref()?.io_read_bytes),
    },
    Metric {
        name: "stockade_io_write_bytes_total",
        kind: Kind::Counter,
        help: "Bytes written to block devices, all devices summed (io.stat wbytes)",
        float: false,
        value: |s| int(s.usage.as_ref()?.io_write_bytes),
    },
    Metric {
        name: "stockade_oom_kills_total",
        kind: Kind::Counter,
        help: "Processes of the sandbox the OOM killer ended, over every run of its name since boot (memory.events oom_kill, plus the kills that ended earlier runs)",
        float: false,
        value: |s| int(s.usage.as_ref()?.oom_kills),
    },
    Metric {
        name: "stockade_memory_high_events_total",
        kind: Kind::Counter,
        help: "Times the cgroup was throttled for passing memory.high (memory.events high)",
        float: false,
        value: |s| int(s.usage.as_ref()?.memory_high_events),
    },
    Metric {
        name: "stockade_sandbox_start_time_seconds",
        kind: Kind::Gauge,
        help: "When the service was let start, in seconds since the Unix epoch",
        float: true,
        value: |s| Some(Value::Float(s.started_unix_ms as f64 / 1000.0)),
    },
    Metric {
        name: "stockade_sandbox_stopping",
        kind: Kind::Gauge,
        help: "1 while the sandbox stops (a stop was asked for, or its service ended), 0 while it runs",
        float: false,
        value: |s| Some(Value::Int(u64::from(s.state == State::Stopping))),
    },
];

/// The info metric: value 1, its labels carry the unit and the stockade that started it.
pub const INFO: &str = "stockade_sandbox_info";
const INFO_HELP: &str =
    "Always 1; the labels name the systemd unit, the stockade version that started the sandbox and, on a bridge network, the network and the leased address";

/// The `Content-Type` of [`render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    sandbox: String,
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    sandbox: String,
    profile: String,
    unit: String,
    version: String,
    /// A bridge sandbox's network and leased IPv4 address; empty (Prometheus: absent)
    /// for the other network modes.
    network: String,
    address: String,
}

/// Registers `m` and sets each sandbox's known value. prometheus-client adds `_total` to a
/// counter's name itself (and refuses a registered name that has it).
fn register(registry: &mut Registry, m: &Metric, statuses: &[Status]) {
    let name = m.name.strip_suffix("_total").unwrap_or(m.name);
    let values = statuses.iter().filter_map(|s| {
        let labels = Labels {
            sandbox: s.name.clone(),
            profile: s.profile.clone(),
        };
        (m.value)(s).map(|v| (labels, v))
    });
    match (m.kind, m.float) {
        (Kind::Gauge, false) => {
            let f = Family::<Labels, Gauge<u64, AtomicU64>>::default();
            for (l, v) in values {
                f.get_or_create(&l).set(whole(v));
            }
            registry.register(name, m.help, f);
        }
        (Kind::Gauge, true) => {
            let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
            for (l, v) in values {
                f.get_or_create(&l).set(fraction(v));
            }
            registry.register(name, m.help, f);
        }
        (Kind::Counter, false) => {
            let f = Family::<Labels, Counter<u64>>::default();
            for (l, v) in values {
                f.get_or_create(&l).inc_by(whole(v));
            }
            registry.register(name, m.help, f);
        }
        (Kind::Counter, true) => {
            let f = Family::<Labels, Counter<f64, AtomicU64>>::default();
            for (l, v) in values {
                f.get_or_create(&l).inc_by(fraction(v));
            }
            registry.register(name, m.help, f);
        }
    }
}

fn whole(v: Value) -> u64 {
    match v {
        Value::Int(n) => n,
        Value::Float(x) => x as u64,
    }
}

fn fraction(v: Value) -> f64 {
    match v {
        Value::Int(n) => n as f64,
        Value::Float(x) => x,
    }
}

/// The exposition of `statuses`: every metric's HELP and TYPE lines, and one sample per
/// sandbox whose figure is known.
pub fn render(statuses: &[Status]) -> String {
    let mut registry = Registry::default();
    let info = Family::<InfoLabels, Gauge<u64, AtomicU64>>::default();
    for s in statuses {
        info.get_or_create(&InfoLabels {
            sandbox: s.name.clone(),
            profile: s.profile.clone(),
            unit: s.unit.clone().unwrap_or_default(),
            version: s.version.clone(),
            network: s
                .network
                .as_ref()
                .map_or(String::new(), |n| n.network.clone()),
            address: s
                .network
                .as_ref()
                .map_or(String::new(), |n| n.address.to_string()),
        })
        .set(1);
    }
    registry.register(INFO, INFO_HELP, info);
    for m in METRICS {
        register(&mut registry, m, statuses);
    }
    let mut out = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in a label value.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        out = format!("# stockade: encoding failed: {e}\n");
    }
    out
}

/// Every metric with its type and help, for `stockade metrics --help`.
pub fn help_text() -> String {
    let mut t = String::from(
        "Examples:\n  stockade metrics\n  stockade metrics --listen 127.0.0.1:9464   (GET /metrics, as stockade-metrics.service does)\n  stockade metrics --listen 9464\n\n\
Metrics (labels sandbox and profile on each; a figure its cgroup cannot account, or a limit that is `max`, is left out, never 0):\n",
    );
    t.push_str(&format!(
        "  {INFO} (gauge, labels unit, version, network and address too)\n      {INFO_HELP}\n"
    ));
    for m in METRICS {
        let kind = match m.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        t.push_str(&format!("  {} ({kind})\n      {}\n", m.name, m.help));
    }
    t.push_str(
        "\nThe server answers only GET /metrics: 404 for another path, 405 for another method, \
400, 408 or 431 for a malformed, slow or oversized request (the head is read up to 8 KiB, \
for 5 seconds), and goes on serving. Needs root.",
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::UsageJson;

    fn status(name: &str, usage: Option<UsageJson>) -> Status {
        Status {
            name: name.into(),
            state: State::Running,
            profile: "redis".into(),
            version: "0.1.0".into(),
            service_pid: Some(42),
            supervisor_pid: 40,
            unit: Some(format!("stockade-{name}.scope")),
            started_unix_ms: 1_700_000_000_500,
            cgroup: None,
            network: (name == "cache").then(|| crate::ops::records::Attached {
                network: "default".into(),
                bridge: "stockade0".into(),
                veth: "vstk7".into(),
                address: std::net::Ipv4Addr::new(10, 89, 0, 7),
                address6: None,
            }),
            usage,
        }
    }

    fn full() -> UsageJson {
        UsageJson {
            memory_bytes: Some(100 << 20),
            memory_limit_bytes: Some(256 << 20),
            memory_peak_bytes: Some(200 << 20),
            cpu_usage_usec: Some(1_500_000),
            cpu_read_unix_us: Some(1_700_000_001_000_000),
            cpu_throttled_usec: Some(25_000),
            tasks: Some(21),
            tasks_limit: Some(64),
            io_read_bytes: Some(4097),
            io_write_bytes: Some(8194),
            oom_kills: Some(1),
            memory_high_events: Some(17),
            controllers: vec!["cpu".into(), "io".into(), "memory".into(), "pids".into()],
        }
    }

    /// A sample: its name, its labels in order, its value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A strict reading of the text format: `# HELP name text`, `# TYPE name gauge|counter`
    /// before any sample of `name`, and samples `name{k="v",...} number` of a typed name.
    fn parse(text: &str) -> Vec<Sample> {
        let mut typed = std::collections::BTreeMap::new();
        let mut samples = Vec::new();
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !n.starts_with(|c: char| c.is_ascii_digit())
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (n, _) = rest.split_once(' ').expect(line);
                assert!(name_ok(n), "{line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (n, t) = rest.split_once(' ').expect(line);
                assert!(name_ok(n) && ["gauge", "counter"].contains(&t), "{line}");
                assert!(typed.insert(n.to_owned(), t.to_owned()).is_none(), "{line}");
            } else {
                assert!(!line.starts_with('#'), "unexpected comment: {line}");
                let (series, value) = line.rsplit_once(' ').expect(line);
                let value: f64 = value.parse().expect(line);
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, l.strip_suffix('}').expect(line)),
                    None => (series, ""),
                };
                let t = typed.get(name).unwrap_or_else(|| panic!("untyped: {line}"));
                assert_eq!(t == "counter", name.ends_with("_total"), "{line}");
                let labels = labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').expect(line);
                        assert!(name_ok(k), "{line}");
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (k.to_owned(), v.expect(line).to_owned())
                    })
                    .collect();
                samples.push((name.to_owned(), labels, value));
            }
        }
        samples
    }

    fn value(samples: &[Sample], name: &str, sandbox: &str) -> Option<f64> {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l.iter().any(|(k, v)| k == "sandbox" && v == sandbox))
            .map(|s| s.2)
    }

    #[test]
    fn every_figure_is_exported_with_its_labels_and_counters_end_in_total() {
        let text = render(&[status("cache", Some(full()))]);
        let samples = parse(&text);
        let v = |n: &str| value(&samples, n, "cache");
        assert_eq!(v("stockade_memory_usage_bytes"), Some(104_857_600.0));
        assert_eq!(v("stockade_memory_limit_bytes"), Some(268_435_456.0));
        assert_eq!(v("stockade_memory_peak_bytes"), Some(209_715_200.0));
        assert_eq!(v("stockade_cpu_usage_seconds_total"), Some(1.5));
        assert_eq!(v("stockade_cpu_throttled_seconds_total"), Some(0.025));
        assert_eq!(v("stockade_tasks"), Some(21.0));
        assert_eq!(v("stockade_tasks_limit"), Some(64.0));
        assert_eq!(v("stockade_io_read_bytes_total"), Some(4097.0));
        assert_eq!(v("stockade_io_write_bytes_total"), Some(8194.0));
        assert_eq!(v("stockade_oom_kills_total"), Some(1.0));
        assert_eq!(v("stockade_memory_high_events_total"), Some(17.0));
        assert_eq!(
            v("stockade_sandbox_start_time_seconds"),
            Some(1_700_000_000.5)
        );
        assert!(
            text.contains("stockade_sandbox_info{sandbox=\"cache\",profile=\"redis\",unit=\"stockade-cache.scope\",version=\"0.1.0\",network=\"default\",address=\"10.89.0.7\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE stockade_cpu_usage_seconds_total counter\n"));
        assert!(text.contains("# TYPE stockade_tasks gauge\n"));
        // Every sample names its sandbox and profile; every table entry has one.
        for (n, l, _) in &samples {
            assert_eq!(
                &l[..2],
                [
                    ("sandbox".into(), "cache".into()),
                    ("profile".into(), "redis".into())
                ],
                "{n}"
            );
        }
        for m in METRICS {
            assert!(v(m.name).is_some(), "{} missing:\n{text}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn unknown_figures_are_left_out_not_zero() {
        // A hybrid host: no memory or io controller, no task limit; and a sandbox without a
        // cgroup of its own, which has nothing but its info and start time.
        let partial = UsageJson {
            memory_bytes: None,
            memory_limit_bytes: None,
            memory_peak_bytes: None,
            io_read_bytes: None,
            io_write_bytes: None,
            oom_kills: None,
            memory_high_events: None,
            tasks_limit: None,
            controllers: vec!["cpu".into(), "pids".into()],
            ..full()
        };
        let text = render(&[status("a", Some(partial)), status("b", None)]);
        let samples = parse(&text);
        for n in [
            "stockade_memory_usage_bytes",
            "stockade_memory_limit_bytes",
            "stockade_io_read_bytes_total",
            "stockade_oom_kills_total",
            "stockade_tasks_limit",
        ] {
            assert_eq!(value(&samples, n, "a"), None, "{n}:\n{text}");
        }
        assert_eq!(value(&samples, "stockade_tasks", "a"), Some(21.0));
        let b: Vec<&str> = samples
            .iter()
            .filter(|(_, l, _)| l.iter().any(|(k, v)| k == "sandbox" && v == "b"))
            .map(|s| s.0.as_str())
            .collect();
        assert_eq!(b.len(), 3, "{b:?}");
        assert!(b.contains(&INFO) && b.contains(&"stockade_sandbox_start_time_seconds"));
        assert_eq!(value(&samples, "stockade_sandbox_stopping", "b"), Some(0.0));
        // Nothing running: the HELP and TYPE lines alone, still a valid exposition.
        assert!(parse(&render(&[])).is_empty());
    }

    #[test]
    fn a_stopping_sandbox_says_so_in_a_gauge_not_a_label() {
        let mut s = status("x", None);
        s.state = State::Stopping;
        let text = render(&[s, status("y", None)]);
        let samples = parse(&text);
        assert_eq!(value(&samples, "stockade_sandbox_stopping", "x"), Some(1.0));
        assert_eq!(value(&samples, "stockade_sandbox_stopping", "y"), Some(0.0));
        assert!(
            text.contains("# TYPE stockade_sandbox_stopping gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = status("x", None);
        s.unit = Some("a\"b\\c".into());
        let text = render(&[s]);
        assert!(text.contains(r#"unit="a\"b\\c""#), "{text}");
    }

    #[test]
    fn the_help_text_names_every_metric() {
        let help = help_text();
        for m in METRICS {
            assert!(help.contains(m.name), "{}", m.name);
        }
        let readme = include_str!("../../README.md");
        for name in METRICS.iter().map(|m| m.name).chain([INFO]) {
            assert!(readme.contains(name), "README.md does not document {name}");
        }
    }
}
