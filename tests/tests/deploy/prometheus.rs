//! Prometheus (`deploy/prometheus`, docs/deploy.md): `promtool check
//! rules` and `promtool test rules` on the recording rules, `promtool check
//! config` on the documented scrape configurations. (The recording rules'
//! metric names are held against a real scrape in the systemd run.)

use std::{fs, process::Command};

use crate::{
    helpers::{TempPath, deploy, read, repo, run_ok, yaml_documents},
    kubernetes::object,
};

#[test]
fn recording_rules_check_and_pass_their_unit_tests() {
    let rules = deploy("prometheus/macdrop.recording.yml");
    let out = run_ok(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(&rules),
    )
    .unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(
        Command::new("promtool")
            .args(["test", "rules"])
            .arg(deploy("prometheus/macdrop.recording.test.yml")),
    )
    .unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every scrape configuration in docs/deploy.md passes `promtool check
/// config` with the rule files it names, uses the rules' job and adds
/// `node`. Debian's promtool is built without Kubernetes service discovery:
/// a `kubernetes_sd_configs` is checked here against the DaemonSet's pods,
/// then stands in as a static target for the rest of the check.
#[test]
fn documented_scrape_configurations_are_valid() {
    let doc = read(&repo().join("docs/deploy.md"));
    let configs: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| b.contains("scrape_configs:"))
        .collect();
    assert!(
        configs.len() >= 2,
        "docs/deploy.md has a static and a Kubernetes configuration"
    );
    let dir = TempPath::new("prometheus");
    fs::create_dir_all(&dir.0).unwrap();
    for entry in fs::read_dir(deploy("prometheus")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.0.join(entry.file_name())).unwrap();
    }
    let pod_labels = &object("DaemonSet")["spec"]["template"]["metadata"]["labels"];
    for (i, config) in configs.iter().enumerate() {
        let mut doc = yaml_documents(config).unwrap().remove(0);
        for job in doc["scrape_configs"].as_array_mut().unwrap() {
            assert_eq!(job["job_name"], "macdrop", "the rules' job");
            assert!(
                job["relabel_configs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["target_label"] == "node"),
                "docs/deploy.md scrape configuration {i} adds `node`"
            );
            let Some(sd) = job.as_object_mut().unwrap().remove("kubernetes_sd_configs") else {
                continue;
            };
            let sd = &sd[0];
            assert_eq!(sd["role"], "pod");
            assert_eq!(sd["namespaces"]["names"][0], "macdrop");
            let selector = sd["selectors"][0]["label"].as_str().unwrap();
            let (k, v) = selector.split_once('=').unwrap();
            assert_eq!(pod_labels[k], v, "selects the DaemonSet's pods");
            job["static_configs"] = serde_json::json!([{"targets": ["127.0.0.1:9815"]}]);
        }
        let path = dir.0.join(format!("prometheus-{i}.yml"));
        // JSON is YAML.
        fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let out = run_ok(
            Command::new("promtool")
                .args(["check", "config"])
                .arg(&path),
        )
        .unwrap_or_else(|e| panic!("docs/deploy.md scrape configuration {i}:\n{config}\n{e:#}"));
        assert!(out.contains("SUCCESS"), "{out}");
    }
}
