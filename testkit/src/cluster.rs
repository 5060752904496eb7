//! Test support (feature `testkit`): a throwaway three-node RabbitMQ cluster
//! on this machine, through `.ci/rabbitmq-cluster`. [`Cluster::start`] picks
//! a temporary directory and six free ports, and the [`Cluster`] stops every
//! node and removes its directory when dropped, also when the test panics.
//! A test process that was killed cannot do that: the next `Cluster::start`
//! stops (and removes) clusters whose test process is gone. After a failed
//! test the directory, with the nodes' logs, is kept (and named on stderr).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test support: a failed setup step should stop the test loudly

use rand::Rng;
use shared::amqp::Topology;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DIR_PREFIX: &str = "otp-rabbitmq-cluster-";
/// Marks a directory kept for its logs after a failed test.
const KEEP: &str = "KEEP";

/// One node of the cluster.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    /// 1, 2 or 3.
    pub index: usize,
    /// The Erlang node name, e.g. `otpa-21000-1234-1@localhost`.
    pub name: String,
    /// AMQP port on 127.0.0.1.
    pub port: u16,
    pub dist_port: u16,
}

impl ClusterNode {
    /// `guest` on the default vhost (guest may log in over loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `host:port`, as `Broker::connected_node` reports it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A running three-node cluster; stopped and removed on drop.
pub struct Cluster {
    dir: PathBuf,
    pub nodes: Vec<ClusterNode>,
    /// How long `start` took.
    pub started_in: Duration,
}

/// `.ci/rabbitmq-cluster` of this workspace.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/rabbitmq-cluster")
}

/// A private namespace of exchanges and queues (expiring when unused).
pub fn scratch_topology() -> Topology {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..8).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect();
    Topology::new(format!("test.{suffix}.")).with_queue_expiry(Duration::from_secs(600))
}

/// A base port with `base..base+6` free on 127.0.0.1, below the ephemeral
/// range (where outgoing connections could take one between check and use)
/// and away from rabbitmqctl's own distribution ports (35672..35682).
fn free_base_port() -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base = rng.gen_range(20_000..32_000u16);
        let listeners: Vec<_> = (base..base + 6)
            .map_while(|port| TcpListener::bind(("127.0.0.1", port)).ok())
            .collect();
        if listeners.len() == 6 {
            return base;
        }
    }
    panic!("no six consecutive free ports found in 20000..32000");
}

fn run(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("run .ci/rabbitmq-cluster")
}

async fn run_async(args: Vec<String>) -> Output {
    tokio::process::Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .await
        .expect("run .ci/rabbitmq-cluster")
}

/// Stops and removes clusters left by test processes that no longer exist.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let _ = run(&["stop", &dir.to_string_lossy()]);
        if !dir.join(KEEP).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn parse_nodes(stdout: &str) -> Vec<ClusterNode> {
    stdout
        .lines()
        .filter(|line| line.starts_with("NODE="))
        .map(|line| {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                    .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
                    .to_owned()
            };
            ClusterNode {
                index: field("INDEX").parse().expect("INDEX"),
                name: field("NODE"),
                port: field("PORT").parse().expect("PORT"),
                dist_port: field("DIST_PORT").parse().expect("DIST_PORT"),
            }
        })
        .collect()
}

impl Cluster {
    /// Starts a cluster and waits until node 1 sees three running nodes
    /// (about a minute on a busy two-core machine). Blocking: call it
    /// before the test starts anything it needs running.
    pub fn start() -> Self {
        sweep_stale();
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        // From here on, Drop stops whatever the script started.
        let mut cluster = Self {
            dir,
            nodes: Vec::new(),
            started_in: Duration::ZERO,
        };
        let began = Instant::now();
        let base = free_base_port();
        let output = run(&["start", &cluster.dir.to_string_lossy(), &base.to_string()]);
        assert!(
            output.status.success(),
            "could not start the RabbitMQ cluster ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.started_in = began.elapsed();
        cluster.nodes = parse_nodes(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(cluster.nodes.len(), 3, "start printed {output:?}");
        cluster
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Node `index` (1..3).
    pub fn node(&self, index: usize) -> &ClusterNode {
        &self.nodes[index - 1]
    }

    /// Every node's URL, comma-separated, node 1 first: an `AMQP_URL`.
    pub fn amqp_url(&self) -> String {
        self.nodes.iter().map(ClusterNode::url).collect::<Vec<_>>().join(",")
    }

    /// SIGKILLs node `index`'s beam.smp and waits until it is gone.
    pub async fn kill(&self, index: usize) {
        let output = run_async(vec![
            "kill".into(),
            self.dir.to_string_lossy().into_owned(),
            index.to_string(),
        ])
        .await;
        assert!(
            output.status.success(),
            "could not kill node {index}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `rabbitmqctl -n <node index> args...`; its stdout.
    pub async fn ctl(&self, index: usize, args: &[&str]) -> String {
        let mut all = vec![
            "ctl".to_owned(),
            self.dir.to_string_lossy().into_owned(),
            index.to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let output = run_async(all).await;
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on node {index} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The nodes holding a replica of quorum queue `queue`, as node `via` lists them.
    pub async fn queue_members(&self, via: usize, queue: &str) -> Vec<String> {
        let out = self
            .ctl(via, &["-q", "list_queues", "name", "members", "--formatter", "json"])
            .await;
        let queues: Vec<serde_json::Value> = serde_json::from_str(out.trim()).expect("list_queues JSON");
        let mut members: Vec<String> = queues
            .iter()
            .find(|q| q["name"] == queue)
            .and_then(|q| q["members"].as_array())
            .map(|members| members.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        members.sort();
        members
    }
}

impl Drop for Cluster {
    /// Stops every node; removes the directory, unless the test failed (the
    /// nodes' logs are kept for whoever looks into it, and the path printed).
    fn drop(&mut self) {
        let output = run(&["stop", &self.dir.to_string_lossy()]);
        if !output.status.success() {
            eprintln!(
                "stopping the RabbitMQ cluster in {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        } else if std::thread::panicking() {
            let _ = std::fs::write(self.dir.join(KEEP), b"the test failed; logs kept\n");
            eprintln!("RabbitMQ cluster stopped; its logs are in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_output_is_parsed() {
        let nodes = parse_nodes(
            "NODE=otpa-1-2-1@localhost INDEX=1 PORT=21000 DIST_PORT=21003\n\
             NODE=otpa-1-2-2@localhost INDEX=2 PORT=21001 DIST_PORT=21004\n",
        );
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].name, "otpa-1-2-2@localhost");
        assert_eq!((nodes[1].index, nodes[1].port, nodes[1].dist_port), (2, 21001, 21004));
        assert_eq!(nodes[0].url(), "amqp://guest:guest@127.0.0.1:21000/%2f");
    }
}
