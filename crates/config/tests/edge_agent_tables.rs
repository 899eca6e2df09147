//! The `[edge]` and `[agent]` tables of `moat.toml` and the endpoints' `publish` and `pool`:
//! read into the model, relative paths following the file, and each mistake named by its path.

use std::path::Path;
use std::time::Duration;

use moat_config::{AgentConfig, Config, ConfigError, EdgeConfig, EdgeGrant, TerminateAt};

fn touch(dir: &Path, names: &[&str]) {
    for name in names {
        std::fs::write(dir.join(name), "placeholder").unwrap();
    }
}

fn problems(error: ConfigError) -> Vec<String> {
    error.to_string().lines().map(str::to_string).collect()
}

const BOTH_TABLES: &str = r#"
[agent]
edge = "edge.example.com:4443"

[[endpoints]]
name = "app"
kind = "http"
upstream = "8080"
domain = "app.tunnel.example.com"
publish = true
pool = true

[[endpoints]]
name = "db"
kind = "tls"
upstream = "5432"
domain = "db.tunnel.example.com"
publish = true
terminate_at = "agent"

[edge]
listen = "127.0.0.1:8443"
agent_listen = "127.0.0.1:9443"
agent_names = ["edge.example.com", "10.0.0.1"]
domain = "*.tunnel.example.com"
crt = "tunnel.crt"
key = "tunnel.key"
agent_cas = "agents.pem"
heartbeat_tolerance = "30s"
store = "moat-store.db"
admin_listen = "127.0.0.1:9444"

[[edge.grants]]
agents = "ci-*"
hostnames = ["*.ci.example.com", "status.example.com"]

[[edge.grants]]
agents = "laptop"
hostnames = ["laptop.example.com"]
"#;

#[test]
fn both_tables_are_read_into_the_model() {
    let dir = tempfile::tempdir().unwrap();
    touch(dir.path(), &["tunnel.crt", "tunnel.key", "agents.pem"]);
    let config = Config::from_toml_str(BOTH_TABLES, "moat.toml", dir.path()).unwrap();
    assert_eq!(
        config.edge,
        Some(EdgeConfig {
            listen: "127.0.0.1:8443".parse().unwrap(),
            agent_listen: "127.0.0.1:9443".parse().unwrap(),
            agent_names: vec!["edge.example.com".into(), "10.0.0.1".into()],
            domain: Some("*.tunnel.example.com".into()),
            crt: Some(dir.path().join("tunnel.crt")),
            key: Some(dir.path().join("tunnel.key")),
            agent_cas: Some(dir.path().join("agents.pem")),
            grants: vec![
                EdgeGrant {
                    agents: "ci-*".into(),
                    hostnames: vec!["*.ci.example.com".into(), "status.example.com".into()],
                },
                EdgeGrant {
                    agents: "laptop".into(),
                    hostnames: vec!["laptop.example.com".into()],
                },
            ],
            heartbeat_tolerance: Duration::from_secs(30),
            admin_listen: Some("127.0.0.1:9444".parse().unwrap()),
            admin_cas: None,
            store: Some(dir.path().join("moat-store.db").display().to_string()),
        })
    );
    assert_eq!(
        config.agent,
        Some(AgentConfig {
            edges: vec!["edge.example.com:4443".into()]
        })
    );
    // Several edges: the agent keeps a session to each.
    let several = BOTH_TABLES.replace(
        "edge = \"edge.example.com:4443\"",
        "edge = [\"a.example.com:4443\", \"b.example.com:4443\"]",
    );
    let several = Config::from_toml_str(&several, "moat.toml", dir.path()).unwrap();
    assert_eq!(
        several.agent.map(|agent| agent.edges),
        Some(vec![
            "a.example.com:4443".into(),
            "b.example.com:4443".into()
        ])
    );
    let [app, db] = &config.endpoints[..] else {
        panic!("two endpoints: {:?}", config.endpoints);
    };
    assert!(app.publish && app.pool);
    assert_eq!(app.terminate_at, TerminateAt::Edge);
    assert!(db.publish && !db.pool);
    assert_eq!(db.terminate_at, TerminateAt::Agent);
    // select keeps the tables.
    let selected = config.select(&["db".into()], "moat.toml").unwrap();
    assert!(selected.edge.is_some() && selected.agent.is_some());
}

#[test]
fn defaults_of_the_edge_and_a_file_with_only_an_edge() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str("[edge]\n", "moat.toml", dir.path()).unwrap();
    assert!(config.endpoints.is_empty(), "an [edge] needs no endpoints");
    assert_eq!(config.agent, None);
    assert_eq!(
        config.edge,
        Some(EdgeConfig {
            listen: "0.0.0.0:443".parse().unwrap(),
            agent_listen: "0.0.0.0:4443".parse().unwrap(),
            agent_names: Vec::new(),
            domain: None,
            crt: None,
            key: None,
            agent_cas: None,
            grants: Vec::new(),
            heartbeat_tolerance: Duration::from_secs(15),
            admin_listen: Some("127.0.0.1:9443".parse().unwrap()),
            admin_cas: None,
            store: None,
        })
    );
    // Without an [edge] a file still needs endpoints; endpoints are not published by default.
    let error = Config::from_toml_str("[agent]\nedge = \"e:1\"\n", "moat.toml", dir.path());
    assert!(problems(error.unwrap_err())[0].starts_with("moat.toml: endpoints: no endpoints"));
    let config = Config::from_toml_str(
        "[[endpoints]]\nname = \"a\"\nkind = \"http\"\nupstream = \"8080\"\n",
        "moat.toml",
        dir.path(),
    )
    .unwrap();
    assert!(!config.endpoints[0].publish && !config.endpoints[0].pool);
    assert_eq!((config.edge, config.agent), (None, None));
}

/// One endpoint that `publish`es, with the [agent] it needs, so that cases only add tables.
const ENDPOINT: &str = r#"
[[endpoints]]
name = "app"
kind = "http"
upstream = "8080"
"#;

#[test]
fn each_invalid_value_is_named_by_its_field_path() {
    // (the file after ENDPOINT, the problem expected, after "moat.toml: ")
    let cases: &[(&str, &str)] = &[
        (
            "[edge]\nlisten = \"443\"",
            "edge.listen: \"443\" is not an IP:port address",
        ),
        (
            "[edge]\nagent_listen = \"0.0.0.0\"",
            "edge.agent_listen: \"0.0.0.0\" is not an IP:port address",
        ),
        (
            "[edge]\nagent_names = [\"ok.example.com\", \"bad name\"]",
            "edge.agent_names[1]: \"bad name\" is neither a DNS name nor an IP address",
        ),
        (
            "[edge]\ndomain = \"under_score.example.com\"",
            "edge.domain: \"under_score.example.com\" is not a DNS name",
        ),
        (
            "[edge]\ndomain = \"*.t.example.com\"\ncrt = \"t.crt\"",
            "edge.key: missing; a certificate (crt) needs its private key (key)",
        ),
        (
            "[edge]\ndomain = \"*.t.example.com\"\nkey = \"t.key\"",
            "edge.crt: missing; a private key (key) needs its certificate (crt)",
        ),
        (
            "[edge]\ncrt = \"t.crt\"\nkey = \"t.key\"",
            "edge.domain: missing; the certificate (crt, key) is served for the edge's domain",
        ),
        (
            "[edge]\nagent_cas = \"nowhere.pem\"",
            "nowhere.pem: no such file",
        ),
        (
            "[edge]\nheartbeat_tolerance = \"15\"",
            "edge.heartbeat_tolerance: \"15\" has no unit",
        ),
        (
            "[edge]\nheartbeat_tolerance = \"0s\"",
            "edge.heartbeat_tolerance: must be longer than zero",
        ),
        ("[edge]\nport = 1", "edge: unknown field `port`"),
        (
            "[edge]\nlisten = 443",
            "edge.listen: invalid type: integer `443`, expected a string",
        ),
        (
            "[[edge.grants]]\nhostnames = [\"a.example.com\"]",
            "edge.grants[0].agents: missing",
        ),
        (
            "[[edge.grants]]\nagents = \" \"\nhostnames = [\"a.example.com\"]",
            "edge.grants[0].agents: is empty",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"",
            "edge.grants[0].hostnames: missing",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"\nhostnames = []",
            "edge.grants[0].hostnames: is empty",
        ),
        (
            "[[edge.grants]]\nagents = \"a\"\nhostnames = [\"a.example.com\"]\n\
             [[edge.grants]]\nagents = \"ci-*\"\nhostnames = [\"ok.example.com\", \"*.com\"]",
            "edge.grants[1].hostnames[1]: \"*.com\" covers a whole top-level domain",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"\nhostnames = [\"a.*.example.com\"]",
            "edge.grants[0].hostnames[0]: \"a.*.example.com\" has a wildcard other than one \
             leading \"*.\"",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"\nhostnames = [\".\"]",
            "edge.grants[0].hostnames[0]: \".\" names no domain",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"\nhostnames = [\"bad_name.example.com\"]",
            "edge.grants[0].hostnames[0]: \"bad_name.example.com\" is not a DNS name",
        ),
        (
            "[[edge.grants]]\nagents = \"ci-*\"\nhostnames = \"a.example.com\"",
            "edge.grants[0].hostnames: invalid type: string \"a.example.com\", expected a sequence",
        ),
        (
            "[[edge.grants]]\nagent = \"ci-*\"\nhostnames = [\"a.example.com\"]",
            "edge.grants[0]: unknown field `agent`",
        ),
        (
            "[edge]\ngrants = \"all\"",
            "edge.grants: expected [[edge.grants]] tables",
        ),
        ("[agent]", "agent.edge: missing"),
        (
            "[agent]\nedge = \"edge.example.com\"",
            "agent.edge: \"edge.example.com\" is not HOST:PORT",
        ),
        (
            "[agent]\nedge = \":4443\"",
            "agent.edge: \":4443\" is not HOST:PORT",
        ),
        (
            "[agent]\nedge = \"edge.example.com:0\"",
            "agent.edge: \"edge.example.com:0\" is not HOST:PORT",
        ),
        (
            "[agent]\nedge = \"e:1\"\nname = \"x\"",
            "agent: unknown field `name`",
        ),
    ];
    for (tables, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["t.crt", "t.key"]);
        let text = format!("{ENDPOINT}\n{tables}\n");
        let error = Config::from_toml_str(&text, "moat.toml", dir.path())
            .expect_err(&format!("refused: {tables}"));
        let problems = problems(error);
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("moat.toml: ") && problem.contains(expected)),
            "{tables}\nexpected a problem with {expected:?}, got {problems:#?}"
        );
    }
}

#[test]
fn publish_and_pool_are_checked_against_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = |extra: &str| {
        format!("[[endpoints]]\nname = \"app\"\nkind = \"http\"\nupstream = \"8080\"\n{extra}\n")
    };
    let refused =
        |text: String| problems(Config::from_toml_str(&text, "moat.toml", dir.path()).unwrap_err());
    assert_eq!(
        refused(endpoint("publish = true")),
        [
            "moat.toml: endpoints[0].publish: needs the edge to publish through; add an [agent] \
          table with edge = \"HOST:PORT\" (the edge's agent listener)"
        ]
    );
    let pool_alone = refused(endpoint("pool = true"));
    assert_eq!(pool_alone.len(), 1, "{pool_alone:?}");
    assert!(
        pool_alone[0].starts_with(
            "moat.toml: endpoints[0].pool: applies only to an endpoint published through an edge"
        ),
        "{pool_alone:?}"
    );
    assert!(
        refused(endpoint("publish = \"yes\""))[0]
            .starts_with("moat.toml: endpoints[0].publish: invalid type: string")
    );
    // Published endpoints do not listen: the same listen address and domain are no conflict.
    let text = format!(
        "[agent]\nedge = \"e:1\"\n{}{}",
        endpoint("publish = true"),
        endpoint("publish = true").replace("\"app\"", "\"app2\"")
    );
    let config = Config::from_toml_str(&text, "moat.toml", dir.path()).unwrap();
    assert!(config.endpoints.iter().all(|endpoint| endpoint.publish));
}
