//! `AMQP_URL` as a list of brokers: parsed and checked, and the order the
//! supervisor tries them in.

use super::*;

/// One broker of `AMQP_URL`: its URL (secret: it carries the password) and
/// its `host:port`, the only part that is ever logged.
#[derive(Clone)]
pub struct BrokerUrl {
    pub(super) url: SecretString,
    pub(super) node: String,
}

impl BrokerUrl {
    /// `host:port`, for logs.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn url(&self) -> &SecretString {
        &self.url
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// What is wrong with a list of broker URLs. Never quotes an entry: it may
/// hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlListError {
    #[error("no broker URL given")]
    Empty,
    #[error("entry {index} of {count} is not an AMQP URL ({reason}); separate URLs with commas and percent-encode any comma in a password as %2C")]
    Malformed { index: usize, count: usize, reason: String },
}

/// Every non-empty entry of a comma-separated list of AMQP URLs (trimmed),
/// each parsed or with what is wrong with it, in order.
pub(super) fn parse_entries(raw: &str) -> Vec<Result<BrokerUrl, UrlListError>> {
    let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    let count = entries.len();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let malformed = |reason: String| UrlListError::Malformed {
                index: i + 1,
                count,
                // The parser may echo its input, password included.
                reason: if reason.contains(entry) {
                    "not a URL".to_owned()
                } else {
                    reason
                },
            };
            let uri: AMQPUri = entry.parse().map_err(malformed)?;
            if uri.authority.host.is_empty() {
                return Err(malformed("no host".to_owned()));
            }
            Ok(BrokerUrl {
                node: format!("{}:{}", uri.authority.host, uri.authority.port),
                url: SecretString::from((*entry).to_owned()),
            })
        })
        .collect()
}

/// Parses `AMQP_URL`: one AMQP URL or several separated by commas (the nodes
/// of a cluster). Spaces around entries and empty entries are ignored; any
/// malformed entry is an error, so a typo in one node's URL stops the process
/// at start rather than showing up during a failover.
pub fn parse_url_list(raw: &str) -> Result<Vec<BrokerUrl>, UrlListError> {
    let urls = parse_entries(raw).into_iter().collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(UrlListError::Empty);
    }
    Ok(urls)
}

/// The order a supervisor tries the nodes in: each round starts at the node
/// after the last one that failed or was lost, and goes once round the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Rotation {
    count: usize,
    start: usize,
}

impl Rotation {
    pub(super) fn new(count: usize) -> Self {
        Self { count, start: 0 }
    }

    /// The nodes to try next, in order (each once).
    pub(super) fn round(&self) -> Vec<usize> {
        (0..self.count).map(|k| (self.start + k) % self.count).collect()
    }

    /// Node `index` refused, timed out or dropped its connection: the next
    /// round starts after it.
    pub(super) fn failed(&mut self, index: usize) {
        if self.count > 0 {
            self.start = (index + 1) % self.count;
        }
    }
}

/// Connects to the first node of `urls` (a list as in `AMQP_URL`) that
/// answers, for one-shot tools; the error names every node that did not.
pub async fn connect_first(urls: &SecretString, properties: ConnectionProperties) -> anyhow::Result<Connection> {
    let urls = parse_url_list(urls.expose_secret())?;
    let mut failures = Vec::new();
    for url in &urls {
        match Connection::connect(url.url.expose_secret(), properties.clone()).await {
            Ok(connection) => return Ok(connection),
            Err(error) => failures.push(format!("{}: {error}", url.node)),
        }
    }
    anyhow::bail!("no RabbitMQ node answered ({})", failures.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(raw: &str) -> Vec<String> {
        parse_url_list(raw)
            .unwrap()
            .iter()
            .map(|u| u.node().to_owned())
            .collect()
    }

    #[test]
    fn one_url_is_a_list_of_one() {
        assert_eq!(nodes("amqp://guest:guest@127.0.0.1:5672/%2f"), ["127.0.0.1:5672"]);
        // The default port when none is given.
        assert_eq!(nodes("amqp://rabbit.internal"), ["rabbit.internal:5672"]);
        assert_eq!(nodes("amqps://rabbit.internal/%2f"), ["rabbit.internal:5671"]);
    }

    #[test]
    fn several_urls_are_trimmed_and_empty_entries_ignored() {
        let raw = " amqp://u:p@10.0.0.1:5672/%2f ,, amqp://u:p@10.0.0.2:5673/%2f,\tamqp://u:p@node-c:5674/otp , ";
        assert_eq!(nodes(raw), ["10.0.0.1:5672", "10.0.0.2:5673", "node-c:5674"]);
        let urls = parse_url_list(raw).unwrap();
        // Each keeps its own full URL (credentials and vhost included), trimmed.
        assert_eq!(urls[0].url().expose_secret(), "amqp://u:p@10.0.0.1:5672/%2f");
        assert_eq!(urls[2].url().expose_secret(), "amqp://u:p@node-c:5674/otp");
    }

    #[test]
    fn a_list_without_urls_is_refused() {
        assert_eq!(parse_url_list("").unwrap_err(), UrlListError::Empty);
        assert_eq!(parse_url_list(" , ,").unwrap_err(), UrlListError::Empty);
    }

    #[test]
    fn a_malformed_entry_is_refused_by_position_without_its_text() {
        let raw = "amqp://guest:s3cret@10.0.0.1:5672/%2f,amqp://guest:s3cret@10.0.0.2:notaport/%2f";
        let error = parse_url_list(raw).unwrap_err();
        assert!(
            matches!(error, UrlListError::Malformed { index: 2, count: 2, .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("s3cret"), "{error}");
        for raw in [
            "http://guest:s3cret@10.0.0.1:5672/",
            "guest:s3cret@10.0.0.1",
            "s3cret",
            "amqp://guest:s3cret@:5672/",
        ] {
            let error = parse_url_list(raw).unwrap_err();
            assert!(
                matches!(error, UrlListError::Malformed { index: 1, .. }),
                "{raw}: {error:?}"
            );
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
    }

    #[test]
    fn the_lenient_parse_keeps_the_good_entries_in_order() {
        let entries = parse_entries("amqp://a:1, nonsense ,amqp://c:3");
        assert!(entries[0].is_ok() && entries[1].is_err() && entries[2].is_ok());
        assert_eq!(entries[2].as_ref().unwrap().node(), "c:3");
    }

    #[test]
    fn debug_output_hides_the_url() {
        let urls = parse_url_list("amqp://guest:s3cret@10.0.0.1:5672/%2f").unwrap();
        let shown = format!("{urls:?}");
        assert!(shown.contains("10.0.0.1:5672") && !shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn the_first_round_goes_through_the_list_in_order() {
        assert_eq!(Rotation::new(3).round(), [0, 1, 2]);
        assert_eq!(Rotation::new(1).round(), [0]);
    }

    #[test]
    fn after_a_failure_the_next_round_starts_at_the_following_node() {
        let mut rotation = Rotation::new(3);
        rotation.failed(0); // node 0 lost
        assert_eq!(rotation.round(), [1, 2, 0]);
        rotation.failed(2); // the last node wraps round to the first
        assert_eq!(rotation.round(), [0, 1, 2]);
        let mut single = Rotation::new(1);
        single.failed(0);
        assert_eq!(single.round(), [0]);
    }

    /// Replays the supervisor's loop against a scripted cluster: which nodes
    /// it tries, in what order, as nodes die and come back.
    #[test]
    fn the_supervisor_moves_on_instead_of_hammering_a_dead_node() {
        fn connect(rotation: &mut Rotation, up: &[bool], tried: &mut Vec<usize>) -> Option<usize> {
            for index in rotation.round() {
                tried.push(index);
                if up[index] {
                    return Some(index);
                }
                rotation.failed(index);
            }
            None
        }
        let mut rotation = Rotation::new(3);
        let mut tried = Vec::new();
        // All up: the first node.
        assert_eq!(connect(&mut rotation, &[true, true, true], &mut tried), Some(0));
        // Node 0 dies under us: the next attempt starts at node 1.
        rotation.failed(0);
        assert_eq!(connect(&mut rotation, &[false, true, true], &mut tried), Some(1));
        // Node 1 dies too: node 2, not the dead node 0 first.
        rotation.failed(1);
        assert_eq!(connect(&mut rotation, &[false, false, true], &mut tried), Some(2));
        // Node 2 dies and node 0 is back: 0 is tried after 2 is lost.
        rotation.failed(2);
        assert_eq!(connect(&mut rotation, &[true, false, false], &mut tried), Some(0));
        assert_eq!(tried, [0, 1, 2, 0]);

        // Everything down: every round tries each node once, starting after
        // the last failure, which is where the previous round started.
        let mut tried = Vec::new();
        rotation.failed(0);
        assert_eq!(connect(&mut rotation, &[false, false, false], &mut tried), None);
        assert_eq!(connect(&mut rotation, &[false, false, false], &mut tried), None);
        assert_eq!(tried, [1, 2, 0, 1, 2, 0]);
        // Then node 0 comes back: found within one round.
        let mut tried = Vec::new();
        assert_eq!(connect(&mut rotation, &[true, false, false], &mut tried), Some(0));
        assert_eq!(tried, [1, 2, 0]);
    }
}
