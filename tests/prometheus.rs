//! The deployable observability against real servers: the rules in `deploy/prometheus/`
//! under promtool, every dashboard panel's query in `deploy/grafana/` and every recording
//! rule evaluated by a real Prometheus that scrapes the `metrics_service` example while it
//! syncs with faults, and the `metrics_push` example's metrics read back from a real
//! Pushgateway.
//!
//! Needs `promtool`, `prometheus` and `prometheus-pushgateway` (Debian's `prometheus` and
//! `prometheus-pushgateway` packages; `.ci/run` installs them): without one, a test says
//! so and passes, unless `CI=true`. The examples' binaries are those `cargo test` builds
//! beside this test (`target/debug/examples/`); to run this file alone, build them first:
//! `cargo build --example metrics_service --example metrics_push && cargo test --test prometheus`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The alerts the rules must define, with their severity (runbooks and the README refer
/// to these names).
const ALERTS: [(&str, &str); 12] = [
    ("RseSyncDown", "page"),
    ("RseRunsFailing", "page"),
    ("RseQuotaExhausted", "page"),
    ("RseSensitiveFieldBlocked", "page"),
    ("RseSuccessRateBurnFast", "page"),
    ("RseAuthFailing", "page"),
    ("RseSchemaDrift", "ticket"),
    ("RseRecordsRejected", "ticket"),
    ("RseFreshnessSlow", "ticket"),
    ("RseSuccessRateBurnSlow", "ticket"),
    ("RseLeaseStuck", "ticket"),
    ("RseReconcileMismatch", "ticket"),
];

const DASHBOARDS: [&str; 3] = ["executive", "oncall", "debug"];

/// How long a real server gets to come up or to show what is awaited.
const DEADLINE: Duration = Duration::from_secs(120);

// ---- processes, ports, files ------------------------------------------------------------

/// A child process, killed and reaped when dropped, with its output in a file.
struct Running {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(name: &'static str, program: &Path, args: &[String], dir: &Path) -> Running {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            // The examples' scratch files land in this test's directory, removed with it
            // even when the child is killed.
            .env("TMPDIR", dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} ({}): {e}", name, program.display()));
        Running { name, child, log }
    }

    /// The last lines it printed, for a failure message.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- last lines of {} ---\n{}", self.name, lines[lines.len().saturating_sub(30)..].join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of its own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("rse-prometheus-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("binding a free port: {e}"));
    listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"))
}

fn required() -> bool {
    rse::testing::services_required()
}

/// `name` on the PATH; `None` (after saying so, or failing under CI) when it is missing.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        let why = format!("{name} is not installed (Debian: apt-get install prometheus prometheus-pushgateway)");
        if required() {
            panic!("{why}, and CI=true requires it");
        }
        eprintln!("skipping: {why}; set CI=true to make this a failure");
    }
    found
}

/// The binary `cargo test` built for example `name`, beside this test's own binary;
/// `None` (after saying so, or failing under CI) when it was not built.
fn example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("locating the test binary: {e}"));
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()));
    let build = format!("cargo build --example {name}");
    if !path.is_file() {
        let why =
            format!("the {name} example is not built at {} (run `{build}`, or the whole `cargo test`)", path.display());
        if required() {
            panic!("{why}");
        }
        eprintln!("skipping: {why}; set CI=true to make this a failure");
        return None;
    }
    // An example edited since its binary was built would test the old code.
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    for source in [format!("examples/{name}.rs"), "examples/support/warehouse.rs".to_owned()] {
        let changed = std::fs::metadata(Path::new(REPO).join(&source)).and_then(|m| m.modified()).ok();
        if let (Some(built), Some(changed)) = (built, changed) {
            assert!(changed <= built, "{source} changed after {} was built: run `{build}` first", path.display());
        }
    }
    Some(path)
}

// ---- HTTP ---------------------------------------------------------------------------------

async fn get_text(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let answer = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let text = answer.text().await.map_err(|e| e.to_string())?;
    if status.is_success() { Ok(text) } else { Err(format!("{status}: {text}")) }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Result<Json, String> {
    let text = get_text(client, url).await?;
    serde_json::from_str(&text).map_err(|e| format!("{e} in {text}"))
}

/// Polls `check` until it gives a value, or fails naming `what` at the deadline.
async fn wait_for<T, F, Fut>(what: &str, context: impl Fn() -> String, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}\n{}", context());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A Prometheus to query.
struct Prometheus {
    client: reqwest::Client,
    base: String,
}

impl Prometheus {
    /// The series an instant query returns (`Err` for a query Prometheus refuses).
    async fn series(&self, expr: &str) -> Result<Vec<Json>, String> {
        let answer = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let text = answer.text().await.map_err(|e| e.to_string())?;
        let body: Json = serde_json::from_str(&text).map_err(|e| format!("{e} in {text}"))?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        match body["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(body["data"]["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![body["data"]["result"].clone()]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// The value of a query that returns one series.
    async fn value(&self, expr: &str) -> Option<f64> {
        let series = self.series(expr).await.ok()?;
        series.first()?["value"][1].as_str()?.parse().ok()
    }

    async fn metric_names(&self) -> String {
        match get_json(&self.client, &format!("{}/api/v1/label/__name__/values", self.base)).await {
            Ok(names) => names["data"]
                .as_array()
                .map(|n| {
                    n.iter().filter_map(Json::as_str).filter(|n| n.starts_with("rse_")).collect::<Vec<_>>().join(", ")
                })
                .unwrap_or_default(),
            Err(e) => e,
        }
    }
}

// ---- dashboards -----------------------------------------------------------------------------

fn dashboard(name: &str) -> Json {
    let path = Path::new(REPO).join("deploy/grafana").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel of a dashboard, those inside rows included (rows themselves left out).
fn panels(board: &Json) -> Vec<&Json> {
    fn walk<'a>(list: &'a Json, out: &mut Vec<&'a Json>) {
        for panel in list.as_array().into_iter().flatten() {
            if panel["type"] == "row" {
                walk(&panel["panels"], out);
            } else {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&board["panels"], &mut out);
    out
}

/// A panel query as Grafana would send it with every sync selected: the interval and
/// range variables get a minute and an hour (a 1 s scrape fills either).
fn substitute(expr: &str) -> String {
    expr.replace("${__rate_interval}", "1m")
        .replace("$__rate_interval", "1m")
        .replace("${__range}", "1h")
        .replace("$__range", "1h")
        .replace("${__interval}", "15s")
        .replace("$__interval", "15s")
        .replace("${sync}", ".*")
        .replace("$sync", ".*")
}

/// (dashboard, panel title, query) for every query of every panel.
fn panel_queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for name in DASHBOARDS {
        let board = dashboard(name);
        for panel in panels(&board) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((name.to_owned(), panel["title"].as_str().unwrap_or("?").to_owned(), expr.to_owned()));
                }
            }
        }
    }
    out
}

#[test]
fn dashboards_are_grafana_models_with_the_datasource_and_sync_variables() {
    for name in DASHBOARDS {
        let board = dashboard(name);
        assert!(board["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "{name}: schemaVersion below 36");
        assert!(board["uid"].as_str().is_some_and(|u| u == format!("rse-{name}")), "{name}: uid");
        let vars = board["templating"]["list"].as_array().cloned().unwrap_or_default();
        let var = |n: &str| {
            vars.iter().find(|v| v["name"] == n).cloned().unwrap_or_else(|| panic!("{name}: no `{n}` variable"))
        };
        let datasource = var("datasource");
        assert_eq!(
            (datasource["type"].as_str(), datasource["query"].as_str()),
            (Some("datasource"), Some("prometheus")),
            "{name}"
        );
        let sync = var("sync");
        assert_eq!(sync["type"], "query", "{name}");
        assert_eq!(sync["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(sync["query"], "label_values(rse_runs_total, sync)", "{name}");
        assert!(sync["includeAll"] == true && sync["multi"] == true, "{name}: `sync` must allow all and several");

        let mut ids = BTreeSet::new();
        let all = panels(&board);
        assert!(all.len() >= 10, "{name}: {} panels", all.len());
        for panel in all {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{name}: a panel without a title");
            assert!(ids.insert(panel["id"].as_u64()), "{name}: panel id of `{title}` repeated");
            assert!(panel["description"].as_str().is_some_and(|d| !d.is_empty()), "{name}/{title}: no description");
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{name}/{title}: datasource");
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{name}/{title}: no query");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{name}/{title}: target datasource");
                // A panel shows what the metrics say, never a zero made up to fill it.
                assert!(!expr.replace(' ', "").contains("orvector("), "{name}/{title}: `or vector(..)` in {expr}");
                // The process and HTTP metrics have no sync label (one process, one client).
                let unlabelled = ["rse_process_", "rse_http_requests_total"].iter().any(|m| expr.contains(m));
                if !expr.starts_with("ALERTS") && !unlabelled {
                    assert!(expr.contains("$sync"), "{name}/{title}: the query ignores the `sync` variable: {expr}");
                }
            }
        }
    }
}

#[test]
fn every_runbook_link_leads_to_a_page_of_the_repository() {
    let rules = std::fs::read_to_string(Path::new(REPO).join("deploy/prometheus/rules.yml")).expect("rules.yml");
    let prefix = "https://github.com/rse-rs/rse/blob/main/";
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook_url:"))
        .map(|url| url.trim().trim_matches('"'))
        .collect();
    assert_eq!(links.len(), rules.matches("- alert:").count(), "every alert has a runbook_url");
    for link in links {
        let target = link.strip_prefix(prefix).unwrap_or_else(|| panic!("{link} is not a page of the repository"));
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let text =
            std::fs::read_to_string(Path::new(REPO).join(file)).unwrap_or_else(|e| panic!("{link}: {file}: {e}"));
        if !anchor.is_empty() {
            let heading = text.lines().any(|l| {
                l.starts_with('#') && l.trim_start_matches('#').trim().to_lowercase().replace(' ', "-") == anchor
            });
            assert!(heading, "{link}: {file} has no heading for #{anchor}");
        }
    }
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let Some(promtool) = tool("promtool") else { return };
    let dir = Path::new(REPO).join("deploy/prometheus");
    let check = Command::new(&promtool).args(["check", "rules", "rules.yml"]).current_dir(&dir).output();
    let check = check.unwrap_or_else(|e| panic!("running promtool: {e}"));
    assert!(
        check.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let mut tests: Vec<String> = std::fs::read_dir(dir.join("tests"))
        .unwrap_or_else(|e| panic!("listing deploy/prometheus/tests: {e}"))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "yml"))
        .map(|path| format!("tests/{}", path.file_name().unwrap_or_default().to_string_lossy()))
        .collect();
    tests.sort();
    assert!(tests.len() >= 3, "rule unit tests: {tests:?}");
    let run = Command::new(&promtool).args(["test", "rules"]).args(&tests).current_dir(&dir).output();
    let run = run.unwrap_or_else(|e| panic!("running promtool: {e}"));
    let out = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "promtool test rules {tests:?}:\n{out}");
    assert_eq!(out.matches("SUCCESS").count(), tests.len(), "{out}");

    // Every alert is exercised by a unit test.
    let texts: String = tests.iter().filter_map(|t| std::fs::read_to_string(dir.join(t)).ok()).collect();
    for (alert, _) in ALERTS {
        assert!(texts.contains(&format!("alertname: {alert}\n")), "no promtool unit test evaluates {alert}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_recording_rule_has_series_in_a_real_prometheus() {
    let Some(prometheus_bin) = tool("prometheus") else { return };
    let Some(service_bin) = example("metrics_service") else { return };
    let scratch = Scratch::new("scrape");
    let dir = scratch.0.clone();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));

    let service_port = free_port();
    let service = Running::spawn(
        "metrics_service",
        &service_bin,
        &["--listen".into(), format!("127.0.0.1:{service_port}"), "--interval".into(), "0.3".into(), "--faults".into()],
        &dir,
    );
    let metrics_url = format!("http://127.0.0.1:{service_port}/metrics");
    wait_for(
        "the metrics example to serve /metrics",
        || service.tail(),
        || {
            let (client, url) = (&client, &metrics_url);
            async move { get_text(client, url).await.ok() }
        },
    )
    .await;

    let rules = Path::new(REPO).join("deploy/prometheus/rules.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: rse\n    static_configs:\n      - targets: ['127.0.0.1:{service_port}']\n",
        rules.display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let prometheus = Running::spawn(
        "prometheus",
        &prometheus_bin,
        &[
            "--config.file=prometheus.yml".into(),
            "--storage.tsdb.path=data".into(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".into(),
        ],
        &dir,
    );
    let prom = Prometheus { client: client.clone(), base: format!("http://127.0.0.1:{port}") };
    let context = || format!("{}\n{}", prometheus.tail(), service.tail());
    wait_for("Prometheus to be ready", context, || {
        let (client, url) = (&client, format!("{}/-/ready", prom.base));
        async move { get_text(client, &url).await.ok() }
    })
    .await;

    // Scrapes that include completed runs of both syncs, and the sync variable's values.
    wait_for("scrapes with ten completed runs of each sync", context, || async {
        let fewest = prom.value("min(sum by (sync) (rse_runs_total))").await?;
        let syncs = prom.value("count(count by (sync) (rse_runs_total))").await?;
        (fewest >= 10.0 && syncs >= 3.0).then_some(())
    })
    .await;
    // What the exporter serves passes promtool's lint (names, types, help, units).
    if let Some(promtool) = tool("promtool") {
        let text = get_text(&client, &metrics_url).await.unwrap_or_else(|e| panic!("{metrics_url}: {e}"));
        let mut lint = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running promtool: {e}"));
        std::io::Write::write_all(&mut lint.stdin.take().expect("promtool's stdin"), text.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
        let out = lint.wait_with_output().unwrap_or_else(|e| panic!("running promtool: {e}"));
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics on {metrics_url}:\n{said}");
    }

    let values = get_json(&client, &format!("{}/api/v1/label/sync/values?match[]=rse_runs_total", prom.base)).await;
    let values = values.unwrap_or_else(|e| panic!("label values of `sync`: {e}"));
    let syncs: BTreeSet<&str> = values["data"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
    assert_eq!(
        syncs,
        BTreeSet::from(["churn-webhook", "customers-to-crm", "scores-to-app"]),
        "the `sync` variable's values"
    );

    // Every recording rule's query, and every alert rule loaded and evaluated.
    let rules = wait_for("every rule evaluated once", context, || async {
        let rules = get_json(&client, &format!("{}/api/v1/rules", prom.base)).await.ok()?;
        let all: Vec<Json> = rules["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        all.iter().all(|r| r["health"] != "unknown").then_some(all)
    })
    .await;
    let mut alerts = BTreeSet::new();
    let mut queries = panel_queries();
    for rule in &rules {
        let name = rule["name"].as_str().unwrap_or_default();
        assert_eq!(rule["health"], "ok", "rule {name}: {}", rule["lastError"]);
        match rule["type"].as_str() {
            Some("alerting") => {
                let severity = rule["labels"]["severity"].as_str().unwrap_or_default().to_owned();
                let runbook = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
                assert!(
                    runbook.starts_with("https://github.com/rse-rs/rse/blob/main/"),
                    "{name}: runbook_url {runbook}"
                );
                for key in ["summary", "description"] {
                    let text = rule["annotations"][key].as_str().unwrap_or_default();
                    assert!(text.contains("$labels"), "{name}: the {key} does not name the sync or target: {text}");
                }
                alerts.insert((name.to_owned(), severity));
            }
            _ => queries.push((
                "rules.yml".into(),
                format!("recording rule {name}"),
                rule["query"].as_str().unwrap_or_default().into(),
            )),
        }
    }
    let expected: BTreeSet<(String, String)> = ALERTS.iter().map(|(a, s)| ((*a).to_owned(), (*s).to_owned())).collect();
    assert_eq!(alerts, expected, "the alerts and their severities");

    // Every panel's query and every recording rule returns series. Some appear only after
    // the rounds that exercise them (the circuit opens every seventh), so poll until all
    // have or the deadline passes, then name those that never did.
    let mut pending: Vec<(String, String, String)> = queries;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut still = Vec::new();
        for (board, title, expr) in pending {
            match prom.series(&substitute(&expr)).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => still.push((board, title, expr)),
                Err(e) => panic!("{board}: `{title}`: Prometheus refused `{expr}`: {e}"),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        pending.is_empty(),
        "{} queries returned no series after {DEADLINE:?}:\n{}\nrse metrics scraped: {}\n{}",
        pending.len(),
        pending.iter().map(|(b, t, e)| format!("  {b}: `{t}`: {e}")).collect::<Vec<_>>().join("\n"),
        prom.metric_names().await,
        service.tail()
    );
    drop(prometheus);
    drop(service);
}

/// Waits for `running` to exit by itself, and says how.
async fn exit_of(running: &mut Running) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = running.child.try_wait().unwrap_or_else(|e| panic!("waiting for {}: {e}", running.name)) {
            return status;
        }
        assert!(Instant::now() < deadline, "{} did not exit within {DEADLINE:?}\n{}", running.name, running.tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_service_stops_after_its_runs_and_on_sigterm() {
    let Some(service_bin) = example("metrics_service") else { return };
    let scratch = Scratch::new("stop");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));

    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--listen".to_owned(), listen, "--interval".into(), "0".into(), "--runs".into(), "3".into()];
    let mut counted = Running::spawn("metrics_service", &service_bin, &args, &scratch.0);
    let status = exit_of(&mut counted).await;
    assert!(status.success(), "{status}\n{}", counted.tail());
    assert!(counted.tail().contains("stopped after 3 rounds"), "{}", counted.tail());

    #[cfg(unix)]
    {
        let port = free_port();
        let args = ["--listen".to_owned(), format!("127.0.0.1:{port}"), "--interval".into(), "0.2".into()];
        let mut serving = Running::spawn("metrics_service", &service_bin, &args, &scratch.0);
        let url = format!("http://127.0.0.1:{port}/metrics");
        wait_for(
            "a completed run on /metrics",
            || serving.tail(),
            || {
                let (client, url) = (&client, &url);
                async move { get_text(client, url).await.ok().filter(|text| text.contains("rse_runs_total{")) }
            },
        )
        .await;
        let pid = serving.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        let status = exit_of(&mut serving).await;
        assert!(status.success(), "after SIGTERM: {status}\n{}", serving.tail());
        assert!(serving.tail().contains("stopped after"), "{}", serving.tail());
    }
}

#[tokio::test]
async fn the_push_example_lands_its_metrics_on_a_real_pushgateway() {
    let Some(gateway_bin) = tool("prometheus-pushgateway") else { return };
    let Some(push_bin) = example("metrics_push") else { return };
    let scratch = Scratch::new("push");
    let port = free_port();
    let gateway = Running::spawn(
        "pushgateway",
        &gateway_bin,
        &[format!("--web.listen-address=127.0.0.1:{port}"), "--log.level=warn".into()],
        &scratch.0,
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        "the Pushgateway to be ready",
        || gateway.tail(),
        || {
            let (client, url) = (&client, format!("{base}/-/ready"));
            async move { get_text(client, &url).await.ok() }
        },
    )
    .await;

    let push = |gateway: String| {
        let bin = push_bin.clone();
        let dir = scratch.0.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .args(["--gateway", &gateway, "--job", "rse-nightly"])
                .current_dir(&dir)
                .env("TMPDIR", &dir)
                .output()
        })
    };
    let out = push(base.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("running metrics_push: {e}"));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "metrics_push failed:\n{printed}\n{}", gateway.tail());

    let text = get_text(&client, &format!("{base}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("the Pushgateway's /metrics: {e}"));
    let runs: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rse_runs_total{"))
        .filter(|l| l.contains(r#"job="rse-nightly""#) && l.contains(r#"sync="customers-to-crm""#))
        .collect();
    assert_eq!(runs.len(), 1, "one pushed rse_runs_total series of the job's sync, got {runs:?} in:\n{text}");
    let count: f64 = runs[0].rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_default();
    assert_eq!(count, 1.0, "{}", runs[0]);
    assert!(text.contains("push_time_seconds{") && text.contains(r#"job="rse-nightly""#), "{text}");

    // A push that cannot land fails the job.
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let out =
        push(nobody).await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("running metrics_push: {e}"));
    assert!(!out.status.success(), "metrics_push succeeded with no Pushgateway listening");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pushing metrics to"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(gateway);
}
