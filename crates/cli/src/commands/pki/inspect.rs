//! `moat pki inspect`: shows what certificates, CSRs, CRLs and keys contain and what a gateway would refuse.

use std::path::PathBuf;

use anyhow::bail;

/// Flags of `moat pki inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Files to inspect: PEM (any number of certificates, CSRs, CRLs, keys) or one DER object each.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON array of objects, each with a `kind` field, instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Inspects every file, prints what it could read, then fails if any file could not be read.
pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut findings = Vec::new();
    let mut failures = Vec::new();
    for file in &args.files {
        match moat_pki::inspect::inspect_file(file) {
            Ok(found) => findings.extend(found),
            Err(error) => {
                failures.push(crate::flags::with_flag(&error).unwrap_or_else(|| error.to_string()))
            }
        }
    }
    if args.json {
        println!("{}", moat_pki::inspect::findings_to_json(&findings)?);
    } else if !findings.is_empty() {
        print!("{}", moat_pki::inspect::findings_to_text(&findings));
    }
    match failures.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        several => bail!(
            "{} files could not be inspected:\n  {}",
            several.len(),
            several.join("\n  ")
        ),
    }
}
