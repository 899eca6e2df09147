//! Which agent may publish which hostnames: grants from the operator's flags or file, and those the store holds (the API's and the ones joins recorded).

use std::fmt;

pub use moat_config::{GlobError, HostnameGlob};
use moat_policy::{Selector, SelectorValue};
use moat_store::GrantRow;
use moat_trust::ClientIdentity;

use crate::agent_ca::AgentName;
use crate::tokens::grant_of_json;

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
