//! `hilt sign`: an unsigned result signed with a key, into a DSSE envelope, once its
//! claims are checked: the summary and conformance decision must follow from its
//! outcomes, and each outcome's level and waiver from the profile it names.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use hilt_harness::check::Catalogue;
use hilt_harness::host::Date;
use hilt_harness::profile::Library;
use hilt_harness::record::write_bytes_atomically;
use hilt_results::signed::{self, SigningKey};
use hilt_results::{ResultRecord, Verdict};

use crate::cmd::files::envelope_path;

/// `hilt sign` arguments.
#[derive(clap::Args)]
pub struct SignArgs {
    /// The unsigned result (`result.json`).
    result: PathBuf,
    /// The private key (PKCS#8 PEM, mode 0600).
    #[arg(long, value_name = "PATH", env = "HILT_SIGN_KEY", hide_env_values = true)]
    key: PathBuf,
    /// Where to write the envelope; default: beside RESULT, `.json` replaced by `.dsse.json`.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// The profile the result was run with (id or file), to check each outcome's level
    /// and waiver against; default: the profile id the record names, when hilt has it.
    #[arg(long, value_name = "ID|FILE")]
    profile: Option<String>,
}

/// Signs an unsigned result with a key from a file.
pub fn sign(args: &SignArgs, catalogue: &Catalogue) -> anyhow::Result<u8> {
    let key = SigningKey::read(&args.key)?;
    let bytes = std::fs::read(&args.result).with_context(|| format!("cannot read {}", args.result.display()))?;
    if serde_json::from_slice::<signed::Envelope>(&bytes).is_ok() {
        bail!(
            "{} is already a signed envelope; sign the result.json it was made from",
            args.result.display()
        );
    }
    let mut record =
        ResultRecord::from_json(&bytes).with_context(|| format!("cannot sign {}", args.result.display()))?;
    if record.format.minor > hilt_results::FORMAT_MINOR {
        // This build would drop the fields it does not know and sign the rest.
        bail!(
            "{} is result format {}.{}, newer than this hilt writes ({}.{}); sign it with the hilt that made it",
            args.result.display(),
            record.format.major,
            record.format.minor,
            hilt_results::FORMAT_MAJOR,
            hilt_results::FORMAT_MINOR
        );
    }
    if record.signing.take().is_some() {
        eprintln!(
            "hilt: the record was signed by its run with a one-off development key; the new envelope replaces that"
        );
    }
    if !record.run.complete {
        eprintln!(
            "hilt: warning: the record is from a run that did not finish; it is signed as it is, marked incomplete"
        );
    }
    // A signature vouches for what the record claims: claims that do not follow from its
    // own outcomes are refused, never signed.
    let mut problems = record.inconsistencies();
    let spec = args.profile.clone().unwrap_or_else(|| record.profile.id.clone());
    match profile_levels(&record, catalogue, &spec) {
        Ok(found) => problems.extend(found),
        Err(why) => eprintln!(
            "hilt: warning: the outcomes' levels and waivers were not checked against a profile: {why} \
             (give the profile file with --profile)"
        ),
    }
    if !problems.is_empty() {
        bail!(
            "{} is not signed: what it claims does not follow from its outcomes and profile:\n  - {}\n\
             A signature vouches for a record as its run wrote it; run again instead of editing the record",
            args.result.display(),
            problems.join("\n  - ")
        );
    }
    let out = args.out.clone().unwrap_or_else(|| envelope_path(&args.result));
    refuse_to_replace_a_signature(&out)?;
    let signed = key.sign(&record)?;
    write_bytes_atomically(&out, &signed).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} signed by key {}", out.display(), key.public().keyid());
    Ok(0)
}

/// Nothing signed is ever overwritten: an envelope at `out` may be replaced only when it is
/// the one-off development signature a run made for want of a key (which the new envelope
/// supersedes), never when a key someone holds signed it, and never when it cannot be read.
fn refuse_to_replace_a_signature(out: &std::path::Path) -> anyhow::Result<()> {
    let Ok(bytes) = std::fs::read(out) else {
        return Ok(());
    };
    let development = signed::read_unverified(&bytes).is_ok_and(|r| r.signing.is_some());
    if !development {
        bail!(
            "{} exists and is not a development-only envelope; nothing signed is overwritten: give --out another path",
            out.display()
        );
    }
    Ok(())
}

/// What in `record` does not follow from profile `spec` (its id or file): outcomes of
/// checks the profile does not run in the record's tier, levels other than the profile's,
/// waivers the profile does not grant (or failures it waives, unmarked). `Err` when the
/// profile cannot be had as the run applied it: not found, or another digest. Waivers
/// are judged as on the day the run started.
fn profile_levels(record: &ResultRecord, catalogue: &Catalogue, spec: &str) -> Result<Vec<String>, String> {
    let day = run_date(&record.run.started_at)
        .ok_or_else(|| format!("the record's start time `{}` is not a date", record.run.started_at))?;
    let profile = Library::standard()
        .load(spec, catalogue, day)
        .map_err(|e| format!("profile `{spec}` cannot be loaded here ({e})"))?;
    if profile.digest() != record.profile.digest {
        return Err(format!(
            "profile `{spec}` here is {}, but the record applied {}",
            profile.digest(),
            record.profile.digest
        ));
    }
    let mut problems = Vec::new();
    for o in &record.outcomes {
        let Some((_, settings)) = profile.checks_in(record.run.tier).find(|(id, _)| *id == o.check) else {
            problems.push(format!(
                "{}: profile {} does not run {} in tier {}",
                o.trial, profile.id, o.check, record.run.tier
            ));
            continue;
        };
        if settings.level != o.level {
            problems.push(format!(
                "{}: recorded as {}, but profile {} makes it {}",
                o.trial,
                o.level.as_str(),
                profile.id,
                settings.level.as_str()
            ));
        }
        let waived = settings.waiver.is_some() && o.verdict == Verdict::Fail;
        match (waived, o.waiver.is_some()) {
            (false, true) => problems.push(format!(
                "{}: recorded as waived, but profile {} waives no {} here",
                o.trial,
                profile.id,
                o.verdict.as_str()
            )),
            (true, false) => problems.push(format!(
                "{}: profile {} waives this failure, but the record does not say so",
                o.trial, profile.id
            )),
            _ => {}
        }
    }
    Ok(problems)
}

/// The UTC date of an RFC 3339 time (`2026-11-26T12:00:00.000Z`).
fn run_date(rfc3339: &str) -> Option<Date> {
    let date = rfc3339.get(..10)?;
    let mut parts = date.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    Some(Date { year, month, day })
}
