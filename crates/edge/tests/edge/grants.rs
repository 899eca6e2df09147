//! Grants: which agent may publish which hostname, as a table.

use moat_edge::{AgentSelector, Grant, Grants, HostnameGlob};

use crate::support::{globs, identity};

fn grants() -> Grants {
    Grants::new(vec![
        Grant {
            agents: AgentSelector::parse("common_name", "laptop").expect("selector"),
            hostnames: globs(&["*.a.example.com", "App.Example.com."]),
        },
        Grant {
            agents: AgentSelector::parse("common_name", "build-*").expect("selector"),
            hostnames: globs(&["ci.example.com"]),
        },
        Grant {
            agents: AgentSelector::parse("san_dns", "*.agents.example.com").expect("selector"),
            hostnames: globs(&["*.b.example.com"]),
        },
    ])
}

#[test]
fn grants_allow_and_refuse_by_agent_and_hostname() {
    let grants = grants();
    let laptop = identity("laptop", &[]);
    let builder = identity("build-7", &[]);
    let by_san = identity("whoever", &["node1.agents.example.com"]);
    let stranger = identity("stranger", &[]);
    // (agent, hostname, allowed)
    let table = [
        (&laptop, "app.a.example.com", true),
        (&laptop, "APP.A.Example.COM", true),
        (&laptop, "app.a.example.com.", true),
        (&laptop, "app.example.com", true),
        (&laptop, "a.example.com", false),
        (&laptop, "x.y.a.example.com", false),
        (&laptop, "xa.example.com", false),
        (&laptop, "app.a.example.com.evil.com", false),
        (&laptop, "ci.example.com", false),
        (&builder, "ci.example.com", true),
        (&builder, "app.a.example.com", false),
        (&by_san, "db.b.example.com", true),
        (&by_san, "app.a.example.com", false),
        (&stranger, "app.a.example.com", false),
    ];
    for (agent, hostname, allowed) in table {
        let name = agent.common_name.as_deref().unwrap_or_default();
        let outcome = grants.permit(agent, hostname);
        assert_eq!(outcome.is_ok(), allowed, "{name} → {hostname}: {outcome:?}");
    }
}

#[test]
fn a_refusal_names_the_agent_the_hostname_and_what_it_may_publish() {
    let grants = grants();
    let refusal = grants
        .permit(&identity("laptop", &[]), "ci.example.com")
        .expect_err("another agent's hostname");
    assert_eq!(refusal.agent, "laptop");
    assert_eq!(refusal.hostname, "ci.example.com");
    assert_eq!(refusal.allowed, ["*.a.example.com", "app.example.com"]);
    assert_eq!(
        refusal.to_string(),
        "agent laptop may not publish \"ci.example.com\": its grant covers *.a.example.com, \
         app.example.com; publish a hostname under it, or ask the edge's operator for a grant \
         that covers this one"
    );
    let refusal = grants
        .permit(&identity("stranger", &[]), "x.example.com")
        .expect_err("no grant");
    assert!(refusal.allowed.is_empty());
    assert!(
        refusal
            .to_string()
            .contains("join it with a token that grants hostnames"),
        "{refusal}"
    );
}

#[test]
fn globs_and_selectors_are_checked_when_read() {
    for bad in [
        "*",
        "*.com",
        "a.*.example.com",
        "",
        "bad name.example.com",
        "-a.example.com",
    ] {
        let error = HostnameGlob::parse(bad).expect_err(bad);
        assert!(
            error.to_string().contains("*.a.example.com"),
            "{bad}: {error}"
        );
    }
    assert_eq!(
        HostnameGlob::parse("*.A.Example.com.")
            .expect("glob")
            .as_str(),
        "*.a.example.com"
    );
    let error =
        AgentSelector::parse("source_ip", "10.0.0.0/8").expect_err("not a certificate selector");
    assert!(
        error
            .to_string()
            .contains("common_name, san_dns, san_uri, san_email"),
        "{error}"
    );
    AgentSelector::parse("common_name", "").expect_err("empty");
}
