//! Which agent may publish which hostnames: grants from the operator's flags or file, and those the store holds (the API's and the ones joins recorded).

use std::fmt;

use moat_config::{domain_serves, valid_domain};
use moat_policy::{Selector, SelectorValue};
use moat_trust::ClientIdentity;
use serde::{Deserialize, Serialize};

use moat_store::GrantRow;

use crate::agent_ca::AgentName;
use crate::tokens::grant_of_json;

/// A hostname an agent may publish: an exact name (`app.example.com`) or every name one label
/// under a domain (`*.a.example.com`). Kept lower-case without a trailing dot, so that it
/// compares as DNS names do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostnameGlob(String);

/// Why a hostname glob was refused; the message says how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "hostname glob {glob:?} {problem}; write an exact name (app.example.com) or one wildcard label in front (*.a.example.com)"
)]
pub struct GlobError {
    /// The glob as written.
    pub glob: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl HostnameGlob {
    /// Reads `*.a.example.com` or `app.example.com` (any case, a trailing dot ignored).
    pub fn parse(text: &str) -> Result<HostnameGlob, GlobError> {
        let bad = |problem| GlobError {
            glob: text.to_owned(),
            problem,
        };
        let normal = text.trim_end_matches('.').to_ascii_lowercase();
        let name = normal.strip_prefix("*.").unwrap_or(&normal);
        if name.is_empty() {
            return Err(bad("names no domain"));
        }
        if name.contains('*') {
            return Err(bad("has a wildcard other than one leading \"*.\""));
        }
        if !valid_domain(&normal) {
            return Err(bad(
                "is not a DNS name (at most 253 characters, labels of 1-63 letters, digits or '-', not starting or ending with '-')",
            ));
        }
        if normal.starts_with("*.") && !name.contains('.') {
            return Err(bad("covers a whole top-level domain"));
        }
        Ok(HostnameGlob(normal))
    }

    /// True when this glob covers `hostname` (any case, a trailing dot ignored): the same name,
    /// or exactly one label under a `*.` domain (`x.y.a.example.com` is not under
    /// `*.a.example.com`), as the gateway's SNI routing reads an endpoint's domain.
    pub fn covers(&self, hostname: &str) -> bool {
        domain_serves(&self.0, hostname.trim_end_matches('.'))
    }

    /// The glob, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HostnameGlob {
    type Error = GlobError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        HostnameGlob::parse(&text)
    }
}

impl From<HostnameGlob> for String {
    fn from(glob: HostnameGlob) -> String {
        glob.0
    }
}

impl fmt::Display for HostnameGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which agents a grant is for: a certificate selector of the access rules (`common_name`,
/// `san_dns`, `san_uri` or `san_email`, exact or glob), matched by the same code as a rule's.
#[derive(Debug, Clone)]
pub struct AgentSelector(Selector);

/// The selector names a grant accepts.
pub const AGENT_SELECTORS: [&str; 4] = ["common_name", "san_dns", "san_uri", "san_email"];

/// Why an agent selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("grant selector {name} = {value:?}: {problem}")]
pub struct SelectorRefused {
    /// The selector's name as written.
    pub name: String,
    /// Its value as written.
    pub value: String,
    /// What is wrong and what to write.
    pub problem: String,
}

impl AgentSelector {
    /// Reads `name = glob`, e.g. `common_name = "laptop-*"` or `san_dns = "*.agents.example.com"`.
    pub fn parse(name: &str, glob: &str) -> Result<AgentSelector, SelectorRefused> {
        let refused = |problem: String| SelectorRefused {
            name: name.to_owned(),
            value: glob.to_owned(),
            problem,
        };
        if !AGENT_SELECTORS.contains(&name) {
            return Err(refused(format!(
                "grants select agents by {}",
                AGENT_SELECTORS.join(", ")
            )));
        }
        Selector::parse(name, SelectorValue::Text(glob.to_owned()))
            .map(AgentSelector)
            .map_err(|error| refused(error.to_string()))
    }

    /// The agent whose certificate CN is exactly `name`: how a joined agent's grant is bound.
    pub fn agent(name: &AgentName) -> AgentSelector {
        AgentSelector(Selector::CommonName(moat_policy::TextPattern::new(
            name.as_str(),
        )))
    }

    /// True when the agent's verified certificate matches.
    pub fn matches(&self, agent: &ClientIdentity) -> bool {
        self.0.matches_certificate(agent, None)
    }
}

impl fmt::Display for AgentSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One grant: the agents it selects may publish these hostnames.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Which agents.
    pub agents: AgentSelector,
    /// Which hostnames they may publish.
    pub hostnames: Vec<HostnameGlob>,
}

/// Every grant the edge knows: the operator's and the ones bound to joined agents. The edge asks
/// it on each registration of a hostname.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    grants: Vec<Grant>,
}

/// Why an agent may not publish a hostname: names the agent, the hostname and what it may publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent {agent} may not publish {hostname:?}: {}", allowed_text(.allowed))]
pub struct GrantRefusal {
    /// The agent: its certificate's CN, else its subject.
    pub agent: String,
    /// The hostname it asked for.
    pub hostname: String,
    /// The hostname globs it may publish.
    pub allowed: Vec<String>,
}

fn allowed_text(allowed: &[String]) -> String {
    if allowed.is_empty() {
        "no grant covers this agent; join it with a token that grants hostnames, or grant its certificate hostnames in the edge's configuration".to_owned()
    } else {
        format!(
            "its grant covers {}; publish a hostname under it, or ask the edge's operator for a grant that covers this one",
            allowed.join(", ")
        )
    }
}

impl Grants {
    /// The grants, in the order given.
    pub fn new(grants: Vec<Grant>) -> Grants {
        Grants { grants }
    }

    /// The grants followed by `more` (those the store holds).
    pub fn with(mut self, more: impl IntoIterator<Item = Grant>) -> Grants {
        self.grants.extend(more);
        self
    }

    /// Every hostname glob `agent` may publish, in grant order, without repeats.
    pub fn allowed(&self, agent: &ClientIdentity) -> Vec<&HostnameGlob> {
        let mut allowed: Vec<&HostnameGlob> = Vec::new();
        for grant in self
            .grants
            .iter()
            .filter(|grant| grant.agents.matches(agent))
        {
            for glob in &grant.hostnames {
                if !allowed.contains(&glob) {
                    allowed.push(glob);
                }
            }
        }
        allowed
    }

    /// Whether `agent` may publish `hostname` (compared without case or a trailing dot).
    pub fn permit(&self, agent: &ClientIdentity, hostname: &str) -> Result<(), GrantRefusal> {
        let allowed = self.allowed(agent);
        if allowed.iter().any(|glob| glob.covers(hostname)) {
            return Ok(());
        }
        Err(GrantRefusal {
            agent: agent
                .common_name
                .clone()
                .unwrap_or_else(|| agent.subject.clone()),
            hostname: hostname.to_owned(),
            allowed: allowed.iter().map(|glob| glob.to_string()).collect(),
        })
    }
}

impl Grant {
    /// The grant a store row holds (`agents`: a glob over the agent certificate's CN;
    /// `hostnames`: a JSON array of hostname globs), checked as the edge's own grants are.
    pub fn from_row(row: &GrantRow) -> Result<Grant, String> {
        let agents = AgentSelector::parse("common_name", &row.agents)
            .map_err(|refused| format!("grant {}: {refused}", row.id))?;
        let hostnames = grant_of_json(&row.hostnames)
            .map_err(|problem| format!("grant {}: {problem}", row.id))?;
        Ok(Grant { agents, hostnames })
    }
}
