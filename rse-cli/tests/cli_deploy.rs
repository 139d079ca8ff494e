//! The deployment examples under `deploy/` use only flags the command has, and hold
//! together: the CronJob's configuration loads and every secret it references is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "cli_support/mod.rs"]
mod cli_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cli_support::*;
use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

/// Each `--flag` of `args` (an `rse` command line without the program) is in the help of
/// its subcommand, and the command line parses: `rse ARGS --help` exits 0.
fn assert_flags_exist(file: &str, args: &[String]) {
    let subcommand = args.first().unwrap_or_else(|| panic!("{file}: no subcommand"));
    let help = run(Path::new("."), &[subcommand, "--help"]);
    assert_eq!(code(&help), 0, "{file}: `rse {subcommand} --help`: {}", text(&help));
    let help = stdout(&help);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap();
        assert!(help.contains(flag), "{file}: `rse {subcommand}` has no flag {flag}:\n{help}");
    }
    let mut parse = args.to_vec();
    parse.push("--help".into());
    let parse: Vec<&str> = parse.iter().map(String::as_str).collect();
    let parsed = run(Path::new("."), &parse);
    assert_eq!(code(&parsed), 0, "{file}: `rse {}` does not parse: {}", args.join(" "), text(&parsed));
}

#[test]
fn the_kubernetes_cronjob_runs_every_sync_with_json_logs_and_its_secrets_set() {
    let file = "kubernetes/cronjob.yaml";
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    let docs: Vec<Yaml> = serde_yaml_ng::Deserializer::from_str(&text).map(|d| Yaml::deserialize(d).unwrap()).collect();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("{file}: no {k}"));

    let cronjob = kind("CronJob");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<String> =
        container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    assert_flags_exist(file, &args);
    let joined = args.join(" ");
    assert!(joined.contains("--log-format json"), "{joined}");
    for bound in ["requests", "limits"] {
        assert!(container["resources"][bound]["memory"].is_string(), "{file}: no memory {bound}");
    }
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 30, "time for a graceful stop");

    // Every variable the configuration references comes from the Secret.
    let secret = kind("Secret");
    let mut from_secret = BTreeSet::new();
    for env in container["env"].as_sequence().unwrap() {
        let reference = &env["valueFrom"]["secretKeyRef"];
        if !reference.is_null() {
            assert_eq!(reference["name"], secret["metadata"]["name"]);
            let key = reference["key"].as_str().unwrap();
            assert!(!secret["stringData"][key].is_null(), "the Secret has no {key}");
            from_secret.insert(env["name"].as_str().unwrap().to_owned());
        }
    }
    let toml = kind("ConfigMap")["data"]["rse.toml"].as_str().unwrap().to_owned();
    let config_path = args.iter().skip_while(|a| *a != "--config").nth(1).unwrap();
    assert!(config_path.starts_with(container["volumeMounts"][0]["mountPath"].as_str().unwrap()));
    let referenced: BTreeSet<String> =
        toml.split("${env:").skip(1).map(|rest| rest.split('}').next().unwrap().to_owned()).collect();
    assert!(!referenced.is_empty());
    assert_eq!(referenced, from_secret, "variables the configuration reads vs. those the Secret sets");
    let config = rse_cli::config::ConfigFile::parse(Path::new("rse.toml"), toml)
        .unwrap_or_else(|e| panic!("{file}: the ConfigMap's rse.toml: {e}"));
    assert_eq!(config.sync_names(), ["customers"]);
}

#[test]
fn the_systemd_service_and_timer_use_existing_flags() {
    let service = std::fs::read_to_string(deploy("systemd/rse.service")).unwrap();
    let exec = service.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert!(words.next().unwrap().ends_with("/rse"));
    let args: Vec<String> = words.map(str::to_owned).collect();
    assert_flags_exist("systemd/rse.service", &args);
    assert!(service.contains("Type=oneshot") && service.contains("KillSignal=SIGTERM"));
    let timer = std::fs::read_to_string(deploy("systemd/rse.timer")).unwrap();
    assert!(timer.lines().any(|l| l.starts_with("OnCalendar=")));
}

#[test]
fn the_container_image_runs_the_binary_only_as_a_non_root_user() {
    let file = "container/Containerfile";
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "{file}: a multi-stage build");
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    assert!(last_stage.contains("USER nonroot"));
    let copies: Vec<&str> = last_stage.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(copies, ["COPY --from=build /src/target/release/rse /usr/local/bin/rse"]);
    let cmd = last_stage.lines().find_map(|l| l.strip_prefix("CMD ")).expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_flags_exist(file, &args);
}
