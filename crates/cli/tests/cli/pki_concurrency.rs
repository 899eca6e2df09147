//! `moat pki` commands run at the same time on one CA: none of their ledger changes is lost.

use crate::common;

use std::collections::BTreeSet;

use common::{Scratch, combined, serial_of};

use crate::pki_support::ledger;

/// How many `moat pki issue` race each other; before the ledger lock 20 kept only 7 or 8 entries.
const ISSUERS: usize = 20;
/// How many of those certificates are revoked at the same time.
const REVOKERS: usize = 10;

/// Lower-case hex without leading zeros, as ledger.json stores serials.
fn normalized(serial: &str) -> String {
    let serial = serial.trim().to_ascii_lowercase().replace(':', "");
    let significant = serial.trim_start_matches('0');
    if significant.is_empty() {
        "0".to_owned()
    } else {
        significant.to_owned()
    }
}

fn ledger_serials(scratch: &Scratch) -> Vec<String> {
    ledger(scratch, "ca")["certificates"]
        .as_array()
        .expect("ledger.json has a certificates array")
        .iter()
        .map(|entry| entry["serial"].as_str().expect("serial").to_owned())
        .collect()
}

/// `count` command lines, the `index`-th made by `line(index)`, as moat_parallel takes them.
fn runs(count: usize, line: impl Fn(usize) -> String) -> Vec<Vec<String>> {
    (0..count)
        .map(|index| line(index).split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn assert_all_succeeded(what: &str, outputs: &[std::process::Output]) {
    for (index, output) in outputs.iter().enumerate() {
        assert!(
            output.status.success(),
            "{what} #{index} failed: {}",
            combined(output)
        );
    }
}

/// A CA and `ISSUERS` client certificates `client0..`, all issued at the same time.
fn ca_with_parallel_clients() -> Scratch {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca", "--cn", "Busy CA"]);
    assert!(
        ledger_serials(&scratch).is_empty(),
        "init-ca records no serial"
    );
    let issues = runs(ISSUERS, |index| {
        format!("pki issue --ca ca --profile client --cn client{index} --out client{index}")
    });
    assert_all_succeeded("moat pki issue", &scratch.moat_parallel(&issues));
    scratch
}

#[test]
fn twenty_parallel_issues_leave_twenty_ledger_entries() {
    let scratch = ca_with_parallel_clients();
    let recorded = ledger_serials(&scratch);
    assert_eq!(recorded.len(), ISSUERS, "ledger.json entries: {recorded:?}");
    let distinct: BTreeSet<&String> = recorded.iter().collect();
    assert_eq!(distinct.len(), ISSUERS, "distinct serials: {recorded:?}");
    let written: BTreeSet<String> = (0..ISSUERS)
        .map(|index| normalized(&serial_of(&scratch, &format!("client{index}.crt"))))
        .collect();
    assert_eq!(
        written,
        recorded.iter().cloned().collect::<BTreeSet<String>>(),
        "the ledger holds exactly the serials of the written certificates"
    );
}

#[test]
fn ten_parallel_revocations_are_all_listed_in_the_next_crl() {
    let scratch = ca_with_parallel_clients();
    let revokes = runs(REVOKERS, |index| {
        format!("pki revoke --ca ca --cert client{index}.crt --reason keyCompromise")
    });
    assert_all_succeeded("moat pki revoke", &scratch.moat_parallel(&revokes));
    let revoked: BTreeSet<String> = (0..REVOKERS)
        .map(|index| normalized(&serial_of(&scratch, &format!("client{index}.crt"))))
        .collect();

    let stdout = scratch.moat_ok(&["pki", "crl", "--ca", "ca", "--out", "ca.crl"]);
    assert!(
        stdout.contains(&format!("(CRL number 1, {REVOKERS} revoked")),
        "{stdout}"
    );
    let text = scratch.openssl(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    let listed: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Serial Number:"))
        .map(normalized)
        .collect();
    assert_eq!(listed, revoked, "openssl crl -text:\n{text}");
    assert_eq!(ledger_serials(&scratch).len(), ISSUERS);
}

#[test]
fn parallel_crls_get_distinct_numbers() {
    let scratch = Scratch::new();
    scratch.moat_ok(&["pki", "init-ca", "--out", "ca"]);
    let crls = runs(5, |index| format!("pki crl --ca ca --out {index}.crl"));
    let outputs = scratch.moat_parallel(&crls);
    assert_all_succeeded("moat pki crl", &outputs);
    let numbers: BTreeSet<String> = (0..5)
        .map(|index| {
            scratch
                .openssl(&[
                    "crl",
                    "-in",
                    &format!("{index}.crl"),
                    "-noout",
                    "-crlnumber",
                ])
                .trim()
                .to_owned()
        })
        .collect();
    let expected: BTreeSet<String> = (1..=5)
        .map(|number| format!("crlNumber=0x0{number}"))
        .collect();
    assert_eq!(numbers, expected);
    assert_eq!(ledger(&scratch, "ca")["crl_number"], 5);
}
