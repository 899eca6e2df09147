//! `moat edge ca|endpoints|grants|domains|agents|disconnect`: the edge's admin API as commands,
//! answering in tables for a person or in the API's own JSON for scripts.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http::header::ETAG;
use http::{Method, StatusCode};
use moat_control::{AdminClient, ControlError};
use moat_edge::admin::{ADMIN_CA_DIR, ADMIN_CERT_FILE, ADMIN_DIR, ADMIN_KEY_FILE};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::edge::ADMIN_ADDRESS_FILE;
use super::serve::moat_home;

/// The `moat edge` subcommands that talk to a running edge's admin API.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// The CAs whose client certificates the edge's endpoints accept: add, list, rm.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Hostnames the edge's operator defines (kind, where TLS ends, CAs, rules): these win over
    /// what an agent asks for. add, list, set, rm.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Which agents (a glob on their certificate's name) may publish which hostnames: add,
    /// list, rm.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Hostnames kept for one agent, refused to every other: reserve, list, release.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// List the agents connected now (their tunnel sessions).
    Agents(ApiArgs),
    /// End every live session of an agent (it reconnects unless it is stopped or its grant is
    /// gone).
    Disconnect(DisconnectArgs),
}

/// How to reach the admin API; every admin subcommand takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The admin API's URL, https://HOST:PORT (default: the one the edge recorded in
    /// $MOAT_HOME/edge/admin-address when it started).
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// An administrator's client certificate, PEM (default: the local administrator's,
    /// $MOAT_HOME/edge/admin/admin.crt).
    #[arg(long, value_name = "FILE", requires = "admin_key")]
    pub admin_cert: Option<PathBuf>,
    /// The private key of --admin-cert, PEM (default: $MOAT_HOME/edge/admin/admin.key).
    #[arg(long, value_name = "FILE", requires = "admin_cert")]
    pub admin_key: Option<PathBuf>,
    /// The CA that issued the admin API's server certificate, PEM (default: the edge's admin
    /// CA, $MOAT_HOME/edge/admin-ca/ca.crt).
    #[arg(long, value_name = "FILE")]
    pub api_ca: Option<PathBuf>,
    /// Print the API's JSON answer instead of a table or a sentence (a list: all its pages
    /// in one).
    #[arg(long)]
    pub json: bool,
}

/// Free text an operator attaches to a record.
#[derive(Debug, Clone, clap::Args)]
pub struct Notes {
    /// Free text for people, at most 255 bytes.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Free text for tools (often JSON), at most 4096 bytes.
    #[arg(long, value_name = "TEXT")]
    pub metadata: Option<String>,
}

/// A record named by its id, as `rm` takes it.
#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The record's id, as the list shows it.
    pub id: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `moat edge ca`.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Upload a CA certificate (one PEM certificate that is a CA).
    Add(CaAddArgs),
    /// List the CAs, with the days until each expires and the endpoints that use it.
    List(ApiArgs),
    /// Delete a CA; refused while an endpoint uses it.
    Rm(IdArgs),
}

/// Flags of `moat edge ca add`.
#[derive(Debug, clap::Args)]
pub struct CaAddArgs {
    /// The CA's certificate, PEM.
    pub file: PathBuf,
    #[command(flatten)]
    pub notes: Notes,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `moat edge endpoints`.
#[derive(Debug, clap::Subcommand)]
pub enum EndpointsCommand {
    /// Define an endpoint for HOSTNAME.
    Add(EndpointAddArgs),
    /// List the endpoints the operator defined.
    List(ApiArgs),
    /// Change an endpoint: only the flags given change.
    Set(EndpointSetArgs),
    /// Delete an endpoint definition.
    Rm(IdArgs),
}

/// What an endpoint is; `add` and `set` share them.
#[derive(Debug, clap::Args)]
pub struct EndpointFlags {
    /// http: TLS ends and HTTP requests are proxied; tls: the byte stream is forwarded
    /// (add's default: http).
    #[arg(long, value_name = "KIND", value_parser = ["http", "tls"])]
    pub kind: Option<String>,
    /// Where TLS ends; at the agent the edge never sees client certificates, so the endpoint
    /// takes no --ca or --rules (add's default: edge).
    #[arg(long, value_name = "WHERE", value_parser = ["edge", "agent"])]
    pub terminate_at: Option<String>,
    /// Let several agents serve the hostname together (--pool=false: one agent only).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub pool: Option<bool>,
    /// A CA (its id from `moat edge ca list`) whose client certificates the endpoint accepts
    /// (repeatable, at most 10; on set, the list replaces the endpoint's).
    #[arg(long = "ca", value_name = "ID")]
    pub cas: Vec<String>,
    /// Access rules: a policy file of [[rules]] tables, as `moat http --policy` takes (needs
    /// --ca).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    #[command(flatten)]
    pub notes: Notes,
}

/// Flags of `moat edge endpoints add`.
#[derive(Debug, clap::Args)]
pub struct EndpointAddArgs {
    /// The public hostname (no wildcard), e.g. app.tunnel.example.com.
    pub hostname: String,
    #[command(flatten)]
    pub endpoint: EndpointFlags,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Flags of `moat edge endpoints set`.
#[derive(Debug, clap::Args)]
pub struct EndpointSetArgs {
    /// The endpoint's id, from `moat edge endpoints list`.
    pub id: String,
    /// A new hostname.
    #[arg(long, value_name = "HOSTNAME")]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub endpoint: EndpointFlags,
    /// Trust no CA any more (then the agent's own CAs apply).
    #[arg(long, conflicts_with = "cas")]
    pub no_ca: bool,
    /// Drop the endpoint's rules (then the agent's own rules apply).
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `moat edge grants`.
#[derive(Debug, clap::Subcommand)]
pub enum GrantsCommand {
    /// Let agents whose certificate name matches AGENT_GLOB publish hostnames matching one of
    /// HOSTNAME_GLOB.
    Add(GrantAddArgs),
    /// List the grants.
    List(ApiArgs),
    /// Revoke a grant.
    Rm(IdArgs),
}

/// Flags of `moat edge grants add`.
#[derive(Debug, clap::Args)]
pub struct GrantAddArgs {
    /// A glob on agents' certificate names, e.g. 'ci-*'.
    pub agents: String,
    /// Hostname globs: an exact name or one leading wildcard label, e.g. '*.ci.example.com'.
    #[arg(required = true)]
    pub hostnames: Vec<String>,
    #[command(flatten)]
    pub notes: Notes,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `moat edge domains`.
#[derive(Debug, clap::Subcommand)]
pub enum DomainsCommand {
    /// Keep HOSTNAME for the agent --agent.
    Reserve(ReserveArgs),
    /// List the reserved hostnames.
    List(ApiArgs),
    /// Release a reserved hostname.
    Release(IdArgs),
}

/// Flags of `moat edge domains reserve`.
#[derive(Debug, clap::Args)]
pub struct ReserveArgs {
    /// The hostname (no wildcard).
    pub hostname: String,
    /// The agent (its certificate's name) that alone may publish it.
    #[arg(long, value_name = "NAME")]
    pub agent: String,
    #[command(flatten)]
    pub notes: Notes,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Flags of `moat edge disconnect`.
#[derive(Debug, clap::Args)]
pub struct DisconnectArgs {
    /// The agent's name (its certificate's), or one session's id (ts_…) from `moat edge agents`.
    pub agent: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs one admin subcommand.
pub fn run(command: AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match command {
            AdminCommand::Ca(CaCommand::Add(args)) => add_ca(args).await,
            AdminCommand::Ca(CaCommand::List(api)) => list_cas(api).await,
            AdminCommand::Ca(CaCommand::Rm(args)) => args.remove::<CaView>().await,
            AdminCommand::Endpoints(EndpointsCommand::Add(args)) => add_endpoint(args).await,
            AdminCommand::Endpoints(EndpointsCommand::List(api)) => {
                api.connect()?.show_list::<EndpointView>().await
            }
            AdminCommand::Endpoints(EndpointsCommand::Set(args)) => set_endpoint(args).await,
            AdminCommand::Endpoints(EndpointsCommand::Rm(args)) => {
                args.remove::<EndpointView>().await
            }
            AdminCommand::Grants(GrantsCommand::Add(args)) => add_grant(args).await,
            AdminCommand::Grants(GrantsCommand::List(api)) => {
                api.connect()?.show_list::<GrantView>().await
            }
            AdminCommand::Grants(GrantsCommand::Rm(args)) => args.remove::<GrantView>().await,
            AdminCommand::Domains(DomainsCommand::Reserve(args)) => reserve(args).await,
            AdminCommand::Domains(DomainsCommand::List(api)) => {
                api.connect()?.show_list::<DomainView>().await
            }
            AdminCommand::Domains(DomainsCommand::Release(args)) => {
                args.remove::<DomainView>().await
            }
            AdminCommand::Agents(api) => api.connect()?.show_list::<SessionView>().await,
            AdminCommand::Disconnect(args) => disconnect(args).await,
        }
    })
}

/// One collection of the API, and what the command line calls it.
struct Resource {
    /// Its path without the slash, also the name of the list in a page.
    collection: &'static str,
    /// In sentences: "certificate authority".
    what: &'static str,
    /// What `add` did, in the sentence that reports it: "added".
    made: &'static str,
    /// What `rm` did: "removed".
    gone: &'static str,
    /// The command that lists them, for messages.
    lister: &'static str,
}

impl Resource {
    /// The path of the record `id`, refusing an id that would be read as more than one path
    /// segment (or a query).
    fn record(&self, id: &str) -> anyhow::Result<String> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        if id.is_empty() || !id.chars().all(plain) {
            anyhow::bail!("{id:?} is not an id; `{}` shows the ids", self.lister);
        }
        Ok(format!("/{}/{id}", self.collection))
    }
}

/// A record of one collection as this command line shows it.
trait Record: DeserializeOwned {
    /// Its collection.
    const RESOURCE: Resource;
    /// The header of its table.
    const COLUMNS: &'static [&'static str];
    /// Its id.
    fn id(&self) -> &str;
    /// Its row of the table (`now` in Unix seconds, for ages and days left).
    fn row(&self, now: i64) -> Vec<String>;
    /// What it is in a few words, after its id in the sentences of add and rm.
    fn summary(&self) -> String;

    /// The sentence that says `verb` happened to it: `removed endpoint ep_… (app.example.com)`.
    fn sentence(&self, verb: &str) -> String {
        format!(
            "{verb} {} {} ({})",
            Self::RESOURCE.what,
            self.id(),
            self.summary()
        )
    }
}

impl IdArgs {
    /// Deletes the record these arguments name.
    async fn remove<T: Record>(&self) -> anyhow::Result<()> {
        self.api.connect()?.remove::<T>(&self.id).await
    }
}

impl ApiArgs {
    /// A client of the API these flags name, with the local defaults for what they leave out.
    fn connect(&self) -> anyhow::Result<Admin> {
        let edge_dir = || moat_home().map(|home| home.join("edge"));
        let (url, recorded_in) = match &self.api {
            Some(url) => (url.clone(), None),
            None => {
                let file = edge_dir()?.join(ADMIN_ADDRESS_FILE);
                let text = std::fs::read_to_string(&file).map_err(|_| {
                    anyhow::anyhow!(
                        "no edge has recorded its admin API in {}; start `moat edge` or give --api URL",
                        file.display()
                    )
                })?;
                (text.trim().to_owned(), Some(file))
            }
        };
        let (cert_file, key_file) = match (&self.admin_cert, &self.admin_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let dir = edge_dir()?.join(ADMIN_DIR);
                (dir.join(ADMIN_CERT_FILE), dir.join(ADMIN_KEY_FILE))
            }
        };
        let ca_file = match &self.api_ca {
            Some(file) => file.clone(),
            None => edge_dir()?
                .join(ADMIN_CA_DIR)
                .join(moat_pki::ca::CA_CERT_FILE),
        };
        let given = self.admin_cert.is_some();
        let credentials = "give --admin-cert FILE --admin-key FILE, or run this where the edge \
                           keeps its state (the edge makes the local administrator's on its first start)";
        let cert = read_input(
            &cert_file,
            "the administrator's certificate",
            given,
            credentials,
        )?;
        let key = read_input(&key_file, "the administrator's key", given, credentials)?;
        let ca = read_input(
            &ca_file,
            "the admin API's CA",
            self.api_ca.is_some(),
            "give --api-ca FILE (the CA that issued the admin listener's certificate)",
        )?;
        let client =
            AdminClient::new(&url, &cert, &key, &ca).with_context(|| match &recorded_in {
                Some(file) => format!("the admin API recorded in {}", file.display()),
                None => "--api".to_owned(),
            })?;
        Ok(Admin {
            client,
            recorded_in,
            json: self.json,
        })
    }
}

/// The bytes of `file`; when it cannot be read, a message naming it and, for a default the
/// user did not choose, the fix.
fn read_input(file: &Path, what: &str, given: bool, fix: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).map_err(|error| {
        if given {
            anyhow::anyhow!("cannot read {what} {}: {error}", file.display())
        } else {
            anyhow::anyhow!("cannot read {what} {}: {error}; {fix}", file.display())
        }
    })
}

/// One edge's admin API, asked as the flags said.
struct Admin {
    client: AdminClient,
    /// The file the URL came from, when --api was not given: an edge that stopped leaves it.
    recorded_in: Option<PathBuf>,
    /// Print the API's JSON rather than tables and sentences.
    json: bool,
}

/// What the API answered: its status, the record's ETag (its version) and the JSON.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Value,
}

impl Admin {
    /// One request; a refusal is an answer here, not an error.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let (status, headers, body) = self
            .client
            .request(method, path, if_match, body)
            .await
            .map_err(|error| self.unreachable(error))?;
        let etag = headers
            .get(ETAG)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Answer { status, etag, body })
    }

    /// One request that must succeed: a refusal becomes the error that quotes the API.
    async fn call(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> anyhow::Result<Answer> {
        let answer = self.exchange(method, path, if_match, body).await?;
        if !answer.status.is_success() {
            return Err(refusal(answer.status, &answer.body));
        }
        Ok(answer)
    }

    /// The client's failure, with the likely cause when the recorded address does not answer:
    /// the edge stopped since it wrote it.
    fn unreachable(&self, error: ControlError) -> anyhow::Error {
        match (&error, &self.recorded_in) {
            (ControlError::Request { reason, .. }, Some(file))
                if reason.starts_with("cannot connect") =>
            {
                anyhow::anyhow!(
                    "{error}; is `moat edge` still running? {} holds the address it last served its admin API on",
                    file.display()
                )
            }
            _ => anyhow::Error::new(error),
        }
    }

    /// Every item of `resource`, following `next_page_uri` through all pages.
    async fn list(&self, resource: &Resource) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(format!("/{}", resource.collection));
        while let Some(path) = next.take() {
            let mut page = self.call(Method::GET, &path, None, None).await?.body;
            let Some(Value::Array(page_items)) = page.get_mut(resource.collection).map(Value::take)
            else {
                anyhow::bail!(
                    "GET {path}: the answer has no {} list; is --api an edge's admin API?",
                    resource.collection
                );
            };
            items.extend(page_items);
            next = page
                .get("next_page_uri")
                .and_then(Value::as_str)
                .filter(|uri| uri.starts_with('/') && *uri != path)
                .map(str::to_owned);
        }
        Ok(items)
    }

    /// Prints every record of `T`'s collection: their JSON, or a table with a row each.
    async fn show_list<T: Record>(&self) -> anyhow::Result<()> {
        let items = self.list(&T::RESOURCE).await?;
        if self.json {
            return print_json(&whole_list(&T::RESOURCE, items));
        }
        let records = items
            .into_iter()
            .map(read_view::<T>)
            .collect::<anyhow::Result<Vec<_>>>()?;
        print_table(&records);
        Ok(())
    }

    /// Creates a record of `T` from `fields`; prints it.
    async fn create<T: Record>(&self, fields: Map<String, Value>) -> anyhow::Result<()> {
        let path = format!("/{}", T::RESOURCE.collection);
        let made = self
            .call(Method::POST, &path, None, Some(Value::Object(fields)))
            .await?;
        self.report::<T>(made.body, T::RESOURCE.made)
    }

    /// Deletes the record `id` of `T` as it is now (read first, then deleted against that
    /// version, so that what is printed is what went); prints it.
    async fn remove<T: Record>(&self, id: &str) -> anyhow::Result<()> {
        let path = T::RESOURCE.record(id)?;
        let current = self.call(Method::GET, &path, None, None).await?;
        self.call(Method::DELETE, &path, current.etag.as_deref(), None)
            .await?;
        self.report::<T>(current.body, T::RESOURCE.gone)
    }

    /// Prints `record`: its JSON, or the sentence that says `verb` happened to it.
    fn report<T: Record>(&self, record: Value, verb: &str) -> anyhow::Result<()> {
        if self.json {
            return print_json(&record);
        }
        println!("{}", read_view::<T>(record)?.sentence(verb));
        Ok(())
    }
}

/// The error for a refusal: the API's message (and the field it names), else the status.
fn refusal(status: StatusCode, body: &Value) -> anyhow::Error {
    let msg = body.get("msg").and_then(Value::as_str);
    let field = body.pointer("/details/field").and_then(Value::as_str);
    match (msg, field) {
        (Some(msg), Some(field)) if !msg.contains(field) => {
            anyhow::anyhow!("the edge refused: {field}: {msg}")
        }
        (Some(msg), _) => anyhow::anyhow!("the edge refused: {msg}"),
        (None, _) => anyhow::anyhow!("the edge answered {status} without saying why"),
    }
}

/// `items` as one page of the API holding them all.
fn whole_list(resource: &Resource, items: Vec<Value>) -> Value {
    json!({
        resource.collection: items,
        "uri": format!("/{}", resource.collection),
        "next_page_uri": null,
    })
}

/// One record of the API as the type this command line reads.
fn read_view<T: Record>(record: Value) -> anyhow::Result<T> {
    serde_json::from_value(record).with_context(|| {
        format!(
            "the edge's {} is not one this moat reads (another version?); --json shows it as it is",
            T::RESOURCE.what
        )
    })
}

/// The table of `records`.
fn print_table<T: Record>(records: &[T]) {
    let now = unix_now();
    let rows: Vec<Vec<String>> = records.iter().map(|record| record.row(now)).collect();
    print!("{}", table(T::COLUMNS, &rows));
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("cannot print the JSON")?
    );
    Ok(())
}

/// A certificate authority as the API shows it.
#[derive(Debug, Deserialize)]
struct CaView {
    id: String,
    subject_common_name: String,
    not_after: String,
    description: String,
    /// The hostnames of the endpoints that trust it (what stops `ca rm`); not the API's, filled
    /// in by `ca list`.
    #[serde(skip)]
    used_by: Vec<String>,
}

impl Record for CaView {
    const RESOURCE: Resource = Resource {
        collection: "certificate_authorities",
        what: "certificate authority",
        made: "added",
        gone: "removed",
        lister: "moat edge ca list",
    };
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "SUBJECT CN",
        "NOT AFTER",
        "DAYS LEFT",
        "USED BY",
        "DESCRIPTION",
    ];

    fn id(&self) -> &str {
        &self.id
    }

    fn row(&self, now: i64) -> Vec<String> {
        vec![
            self.id.clone(),
            self.subject_common_name.clone(),
            self.not_after.clone(),
            days_left(&self.not_after, now),
            self.used_by.join(","),
            self.description.clone(),
        ]
    }

    fn summary(&self) -> String {
        let cn = if self.subject_common_name.is_empty() {
            "-"
        } else {
            &self.subject_common_name
        };
        format!(
            "CN {cn}, not after {}, {} days left",
            self.not_after,
            days_left(&self.not_after, unix_now())
        )
    }
}

/// An endpoint as the API shows it.
#[derive(Debug, Deserialize)]
struct EndpointView {
    id: String,
    hostname: String,
    kind: String,
    terminate_at: String,
    pool: bool,
    certificate_authority_ids: Vec<String>,
    rules: String,
    description: String,
}

impl Record for EndpointView {
    const RESOURCE: Resource = Resource {
        collection: "endpoints",
        what: "endpoint",
        made: "added",
        gone: "removed",
        lister: "moat edge endpoints list",
    };
    const COLUMNS: &'static [&'static str] = &[
        "ID",
        "HOSTNAME",
        "KIND",
        "TERMINATE AT",
        "POOL",
        "CAS",
        "RULES",
        "DESCRIPTION",
    ];

    fn id(&self) -> &str {
        &self.id
    }

    fn row(&self, _now: i64) -> Vec<String> {
        let yes_no = |yes: bool| if yes { "yes" } else { "no" }.to_owned();
        vec![
            self.id.clone(),
            self.hostname.clone(),
            self.kind.clone(),
            self.terminate_at.clone(),
            yes_no(self.pool),
            self.certificate_authority_ids.join(","),
            yes_no(!self.rules.is_empty()),
            self.description.clone(),
        ]
    }

    fn summary(&self) -> String {
        format!(
            "{}, {}, TLS ends at the {}",
            self.hostname, self.kind, self.terminate_at
        )
    }
}

/// An agent grant as the API shows it.
#[derive(Debug, Deserialize)]
struct GrantView {
    id: String,
    agents: String,
    hostnames: Vec<String>,
    description: String,
}

impl Record for GrantView {
    const RESOURCE: Resource = Resource {
        collection: "agent_grants",
        what: "agent grant",
        made: "added",
        gone: "removed",
        lister: "moat edge grants list",
    };
    const COLUMNS: &'static [&'static str] = &["ID", "AGENTS", "HOSTNAMES", "DESCRIPTION"];

    fn id(&self) -> &str {
        &self.id
    }

    fn row(&self, _now: i64) -> Vec<String> {
        vec![
            self.id.clone(),
            self.agents.clone(),
            self.hostnames.join(","),
            self.description.clone(),
        ]
    }

    fn summary(&self) -> String {
        format!("{} → {}", self.agents, self.hostnames.join(", "))
    }
}

/// A reserved domain as the API shows it.
#[derive(Debug, Deserialize)]
struct DomainView {
    id: String,
    hostname: String,
    agent: String,
    description: String,
}

impl Record for DomainView {
    const RESOURCE: Resource = Resource {
        collection: "reserved_domains",
        what: "domain",
        made: "reserved",
        gone: "released",
        lister: "moat edge domains list",
    };
    const COLUMNS: &'static [&'static str] = &["ID", "HOSTNAME", "AGENT", "DESCRIPTION"];

    fn id(&self) -> &str {
        &self.id
    }

    fn row(&self, _now: i64) -> Vec<String> {
        vec![
            self.id.clone(),
            self.hostname.clone(),
            self.agent.clone(),
            self.description.clone(),
        ]
    }

    fn summary(&self) -> String {
        format!("{} for agent {}", self.hostname, self.agent)
    }
}

/// A live tunnel session as the API shows it.
#[derive(Debug, Deserialize)]
struct SessionView {
    id: String,
    agent: String,
    edge: String,
    started_at: String,
    heartbeat_at: String,
}

impl Record for SessionView {
    const RESOURCE: Resource = Resource {
        collection: "tunnel_sessions",
        what: "tunnel session",
        made: "started",
        gone: "ended",
        lister: "moat edge agents",
    };
    const COLUMNS: &'static [&'static str] =
        &["AGENT", "EDGE", "SINCE", "LAST HEARTBEAT", "SESSION"];

    fn id(&self) -> &str {
        &self.id
    }

    fn row(&self, now: i64) -> Vec<String> {
        vec![
            self.agent.clone(),
            self.edge.clone(),
            self.started_at.clone(),
            ago(&self.heartbeat_at, now),
            self.id.clone(),
        ]
    }

    fn summary(&self) -> String {
        format!("agent {} on edge {}", self.agent, self.edge)
    }
}

async fn add_ca(args: CaAddArgs) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the CA certificate {}", args.file.display()))?;
    let mut fields = Map::new();
    fields.insert("ca_pem".into(), pem.into());
    args.notes.add_to(&mut fields);
    args.api.connect()?.create::<CaView>(fields).await
}

/// The CAs, each with the hostnames of the endpoints that trust it.
async fn list_cas(api: ApiArgs) -> anyhow::Result<()> {
    let admin = api.connect()?;
    let cas = admin.list(&CaView::RESOURCE).await?;
    if admin.json {
        return print_json(&whole_list(&CaView::RESOURCE, cas));
    }
    let mut cas = cas
        .into_iter()
        .map(read_view::<CaView>)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for endpoint in admin.list(&EndpointView::RESOURCE).await? {
        let endpoint: EndpointView = read_view(endpoint)?;
        for ca in cas
            .iter_mut()
            .filter(|ca| endpoint.certificate_authority_ids.contains(&ca.id))
        {
            ca.used_by.push(endpoint.hostname.clone());
        }
    }
    print_table(&cas);
    Ok(())
}

impl Notes {
    /// Adds the notes given to a request's fields.
    fn add_to(&self, fields: &mut Map<String, Value>) {
        for (name, value) in [
            ("description", &self.description),
            ("metadata", &self.metadata),
        ] {
            if let Some(value) = value {
                fields.insert(name.into(), value.clone().into());
            }
        }
    }
}

impl EndpointFlags {
    /// The fields these flags set, named as the API names them.
    fn fields(&self) -> anyhow::Result<Map<String, Value>> {
        let mut fields = Map::new();
        if let Some(kind) = &self.kind {
            fields.insert("kind".into(), kind.clone().into());
        }
        if let Some(place) = &self.terminate_at {
            fields.insert("terminate_at".into(), place.clone().into());
        }
        if let Some(pool) = self.pool {
            fields.insert("pool".into(), pool.into());
        }
        if !self.cas.is_empty() {
            fields.insert("certificate_authority_ids".into(), json!(self.cas));
        }
        if let Some(file) = &self.rules {
            let rules = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the rules {}", file.display()))?;
            fields.insert("rules".into(), rules.into());
        }
        self.notes.add_to(&mut fields);
        Ok(fields)
    }
}

async fn add_endpoint(args: EndpointAddArgs) -> anyhow::Result<()> {
    let mut fields = args.endpoint.fields()?;
    fields.insert("hostname".into(), args.hostname.into());
    args.api.connect()?.create::<EndpointView>(fields).await
}

async fn set_endpoint(args: EndpointSetArgs) -> anyhow::Result<()> {
    let mut fields = args.endpoint.fields()?;
    if let Some(hostname) = args.hostname {
        fields.insert("hostname".into(), hostname.into());
    }
    if args.no_ca {
        fields.insert("certificate_authority_ids".into(), json!([]));
    }
    if args.no_rules {
        fields.insert("rules".into(), "".into());
    }
    if fields.is_empty() {
        anyhow::bail!(
            "nothing to change: give what changes, e.g. --terminate-at agent (see moat edge endpoints set --help)"
        );
    }
    let admin = args.api.connect()?;
    let path = EndpointView::RESOURCE.record(&args.id)?;
    let changed = admin
        .call(Method::PATCH, &path, None, Some(Value::Object(fields)))
        .await?;
    admin.report::<EndpointView>(changed.body, "changed")
}

async fn add_grant(args: GrantAddArgs) -> anyhow::Result<()> {
    let mut fields = Map::new();
    fields.insert("agents".into(), args.agents.into());
    fields.insert("hostnames".into(), json!(args.hostnames));
    args.notes.add_to(&mut fields);
    args.api.connect()?.create::<GrantView>(fields).await
}

async fn reserve(args: ReserveArgs) -> anyhow::Result<()> {
    let mut fields = Map::new();
    fields.insert("hostname".into(), args.hostname.into());
    fields.insert("agent".into(), args.agent.into());
    args.notes.add_to(&mut fields);
    args.api.connect()?.create::<DomainView>(fields).await
}

/// Ends the live sessions of an agent (or the one session named); the edges holding them close
/// the agents' connections.
async fn disconnect(args: DisconnectArgs) -> anyhow::Result<()> {
    let admin = args.api.connect()?;
    let target = args.agent.as_str();
    let sessions = &SessionView::RESOURCE;
    let found: Vec<Value> = if is_session_id(target) {
        let answer = admin
            .exchange(Method::GET, &sessions.record(target)?, None, None)
            .await?;
        match answer.status {
            StatusCode::NOT_FOUND => Vec::new(),
            status if status.is_success() => vec![answer.body],
            status => return Err(refusal(status, &answer.body)),
        }
    } else {
        admin
            .list(sessions)
            .await?
            .into_iter()
            .filter(|session| session.get("agent").and_then(Value::as_str) == Some(target))
            .collect()
    };
    let mut ended = Vec::new();
    for record in found {
        let session: SessionView = read_view(record.clone())?;
        let path = sessions.record(&session.id)?;
        let answer = admin.exchange(Method::DELETE, &path, None, None).await?;
        match answer.status {
            // It ended by itself since the list was read.
            StatusCode::NOT_FOUND => {}
            status if status.is_success() => ended.push((session, record)),
            status => return Err(refusal(status, &answer.body)),
        }
    }
    let Some((first, _)) = ended.first() else {
        anyhow::bail!(
            "no live session of {}; `moat edge agents` lists the connected agents",
            if is_session_id(target) {
                format!("id {target}")
            } else {
                format!("an agent named {target}")
            }
        );
    };
    if admin.json {
        let records = ended.into_iter().map(|(_, record)| record).collect();
        return print_json(&whole_list(sessions, records));
    }
    let ids: Vec<&str> = ended.iter().map(|(session, _)| session.id()).collect();
    println!(
        "disconnected {}: ended {} session{} ({})",
        first.agent,
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ")
    );
    Ok(())
}

/// Whether `text` is a session id (`ts_` and hex) rather than an agent name, which is a DNS
/// label and so never has an underscore.
fn is_session_id(text: &str) -> bool {
    text.strip_prefix("ts_")
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `rows` under `header` in columns two spaces apart (as `kubectl get`), an empty cell as `-`.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|text| cell(text)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|name| name.chars().count()).collect();
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|name| (*name).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (text, width) in row.iter().zip(&widths) {
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', width - text.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table cell: `-` for nothing, and control characters (a newline or an escape sequence in a
/// description someone wrote) shown escaped rather than acted on by the terminal.
fn cell(text: &str) -> String {
    if text.is_empty() {
        return "-".to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Unix seconds now.
fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// An RFC 3339 time of the API as Unix seconds.
fn unix(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

/// Whole days from `now` until `not_after`, or `expired`.
fn days_left(not_after: &str, now: i64) -> String {
    match unix(not_after) {
        Some(end) if end > now => ((end - now) / 86_400).to_string(),
        Some(_) => "expired".to_owned(),
        None => "?".to_owned(),
    }
}

/// How long before `now` the time `rfc3339` was, roughly: `4s ago`, `3m ago`, `2h ago`, `5d ago`.
fn ago(rfc3339: &str, now: i64) -> String {
    let Some(then) = unix(rfc3339) else {
        return rfc3339.to_owned();
    };
    let seconds = (now - then).max(0);
    let (amount, unit) = match seconds {
        0..120 => (seconds, "s"),
        120..7_200 => (seconds / 60, "m"),
        7_200..172_800 => (seconds / 3_600, "h"),
        _ => (seconds / 86_400, "d"),
    };
    format!("{amount}{unit} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_show_nothing_as_a_dash() {
        let rows = vec![
            vec!["ca_1".to_owned(), "Lab CA".to_owned(), String::new()],
            vec!["ca_22".to_owned(), "X".to_owned(), "two\nlines".to_owned()],
        ];
        assert_eq!(
            table(&["ID", "SUBJECT CN", "DESCRIPTION"], &rows),
            "ID     SUBJECT CN  DESCRIPTION\n\
             ca_1   Lab CA      -\n\
             ca_22  X           two\\nlines\n"
        );
        assert_eq!(table(&["AGENT", "EDGE"], &[]), "AGENT  EDGE\n");
    }

    #[test]
    fn a_refusal_quotes_the_api_and_names_the_field_once() {
        let body = json!({"msg": "is not a CA", "details": {"field": "ca_pem"}});
        assert_eq!(
            refusal(StatusCode::BAD_REQUEST, &body).to_string(),
            "the edge refused: ca_pem: is not a CA"
        );
        let body = json!({"msg": "ca_pem: is not a CA", "details": {"field": "ca_pem"}});
        assert_eq!(
            refusal(StatusCode::BAD_REQUEST, &body).to_string(),
            "the edge refused: ca_pem: is not a CA"
        );
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY, &Value::Null).to_string(),
            "the edge answered 502 Bad Gateway without saying why"
        );
    }

    #[test]
    fn times_read_as_days_left_and_ages() {
        let now = unix("2026-01-10T00:00:00Z").unwrap();
        assert_eq!(days_left("2026-01-20T12:00:00Z", now), "10");
        assert_eq!(days_left("2026-01-01T00:00:00Z", now), "expired");
        assert_eq!(ago("2026-01-09T23:59:57Z", now), "3s ago");
        assert_eq!(ago("2026-01-09T23:50:00Z", now), "10m ago");
        assert_eq!(ago("2026-01-07T00:00:00Z", now), "3d ago");
    }

    #[test]
    fn session_ids_are_told_from_agent_names() {
        assert!(is_session_id("ts_0a1b2c3d4e5f6071"));
        assert!(!is_session_id("laptop"));
        assert!(!is_session_id("ts_"));
        assert!(!is_session_id("ts-laptop"));
    }

    #[test]
    fn an_id_stays_one_path_segment() {
        let cas = CaView::RESOURCE;
        assert_eq!(
            cas.record("ca_01").unwrap(),
            "/certificate_authorities/ca_01"
        );
        for bad in ["", "..", "../endpoints", "ca_1?limit=1", "a/b", "ca 1"] {
            assert!(cas.record(bad).is_err(), "{bad:?}");
        }
    }
}
