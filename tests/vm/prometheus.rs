//! A real Prometheus server (Debian's `prometheus`, from tests/deps.sh) scraping
//! `stockade-metrics.service` every second, on 127.0.0.1 only, its storage in a temporary
//! directory; killed and removed when dropped. Queries go to its HTTP API with curl.

use crate::common::text;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Prometheus listens, and the exporter it scrapes (the unit's default).
const WEB: &str = "127.0.0.1:9090";
const TARGET: &str = "127.0.0.1:9464";

pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts the server and waits until it has scraped the exporter once.
    pub fn start() -> Prometheus {
        let bin = "/usr/bin/prometheus";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: run tests/deps.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("stockade-prometheus")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
scrape_configs:\n  - job_name: stockade\n    static_configs:\n      - targets: ['{TARGET}']\n"
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={WEB}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Prometheus { child, dir };
        let up = crate::common::wait_until(Duration::from_secs(120), || {
            std::thread::sleep(Duration::from_millis(200));
            p.value("up{job=\"stockade\"}") == Some(1.0)
        });
        assert!(up, "prometheus did not scrape {TARGET}:\n{}", p.log());
        p
    }

    /// The server's own log, for a failure message.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The result vector of an instant query (`/api/v1/query`); empty when there is none
    /// or the server does not answer.
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let o = Command::new("curl")
            .args(["-sf", "--max-time", "10", "-G", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://{WEB}/api/v1/query"))
            .output()
            .unwrap();
        if !o.status.success() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&o.stdout)));
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of the query's only sample, if it has one.
    pub fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        assert!(r.len() <= 1, "{q}: more than one series: {r:?}");
        r.first()?["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
