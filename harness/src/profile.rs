//! Profiles: declarative TOML that says which devices a profile applies to and which
//! checks run, at what level, in which tiers, with which parameters.
//!
//! Loading goes through typed stages, so that nothing invalid survives it:
//!
//! 1. raw: each file is parsed into [`RawProfile`] (unknown keys are errors), and each
//!    check's `params` and the `[sim]` table are checked against their typed structs where
//!    they stand in the file, so an error names the file, line and column; every mistake
//!    in a file is reported, not only the first;
//! 2. resolved: the `extends` chain is applied, root first, into a [`Profile`] whose
//!    checks carry their level, tiers, validated parameters and waiver (marked expired
//!    when its last day is before the day of loading: it then waives nothing, but the
//!    profile loads); the profile's digest is the sha256 of its canonical JSON form.
//!
//! Profiles are found by path, in the directories of `HILT_PROFILE_PATH`, and among the
//! profiles built into the binary (`profiles/*.toml` of the source tree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hilt_results::{Level, Tier};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::accel::DeviceInfo;
use crate::accel::sim::SimKnobs;
use crate::check::Catalogue;
use crate::confidence::LeakTarget;
use crate::host::Date;

/// The profiles built into the binary, by id.
pub const BUILTIN: &[(&str, &str)] = &[
    ("base", include_str!("../../profiles/base.toml")),
    ("sim-reference", include_str!("../../profiles/sim-reference.toml")),
    ("opencl-generic", include_str!("../../profiles/opencl-generic.toml")),
    ("pocl-cpu", include_str!("../../profiles/pocl-cpu.toml")),
    ("vulkan-generic", include_str!("../../profiles/vulkan-generic.toml")),
    ("lavapipe-cpu", include_str!("../../profiles/lavapipe-cpu.toml")),
    ("nvidia-hopper", include_str!("../../profiles/nvidia-hopper.toml")),
    ("nvidia-blackwell", include_str!("../../profiles/nvidia-blackwell.toml")),
    ("nvidia-ampere", include_str!("../../profiles/nvidia-ampere.toml")),
    ("nvidia-ada", include_str!("../../profiles/nvidia-ada.toml")),
    ("nvidia-h100-sxm", include_str!("../../profiles/nvidia-h100-sxm.toml")),
    ("nvidia-h100-nvl", include_str!("../../profiles/nvidia-h100-nvl.toml")),
    ("nvidia-h200-sxm", include_str!("../../profiles/nvidia-h200-sxm.toml")),
    ("nvidia-h200-nvl", include_str!("../../profiles/nvidia-h200-nvl.toml")),
    ("nvidia-gh200", include_str!("../../profiles/nvidia-gh200.toml")),
    ("amd-cdna2", include_str!("../../profiles/amd-cdna2.toml")),
    ("amd-cdna3", include_str!("../../profiles/amd-cdna3.toml")),
    ("amd-cdna4", include_str!("../../profiles/amd-cdna4.toml")),
    ("amd-mi300x", include_str!("../../profiles/amd-mi300x.toml")),
    ("amd-mi325x", include_str!("../../profiles/amd-mi325x.toml")),
    ("amd-mi308x", include_str!("../../profiles/amd-mi308x.toml")),
];

/// A resolved profile: inheritance applied, every setting validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// The id.
    pub id: String,
    /// The human title.
    pub title: String,
    /// The profile's own version.
    pub version: String,
    /// This profile's id and its ancestors', itself first.
    pub chain: Vec<String>,
    /// Whether results under this profile can certify a platform.
    pub certifying: bool,
    /// The tier `hilt run` uses without `--tier`.
    pub default_tier: Tier,
    /// The watchdog deadline of each tenant call, seconds.
    pub tenant_timeout_s: u64,
    /// How many accelerators a run under this profile must examine (`expect_devices`);
    /// fewer makes the run inconclusive. `None`: no count is expected (and the digest is
    /// what it was before the key existed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_devices: Option<u32>,
    /// What a pass of a check whose detection is probabilistic must establish; the checks
    /// derive their number of attempts from it.
    pub leak_target: LeakTarget,
    /// How far from the fleet's median, in median absolute deviations, a node's
    /// measurement lies before `hilt fleet` flags it as an outlier, for results run under
    /// this profile; `None`: the fleet report's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_outlier_mad: Option<f64>,
    /// Which devices the profile applies to; empty for abstract profiles such as `base`.
    pub matches: Vec<MatchRule>,
    /// Knobs for simulated devices.
    pub sim: SimKnobs,
    /// Checks by id.
    pub checks: BTreeMap<String, CheckSettings>,
}

/// How a profile treats one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckSettings {
    /// Its level.
    pub level: Level,
    /// The tiers it runs in.
    pub tiers: BTreeSet<Tier>,
    /// Its parameters, validated against the check's parameter type, defaults filled in.
    pub params: serde_json::Value,
    /// An accepted deviation, if any.
    pub waiver: Option<Waiver>,
}

/// An accepted deviation: a failing check recorded as waived until `expires`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiver {
    /// Why.
    pub reason: String,
    /// The last day the waiver holds.
    pub expires: Date,
    /// True when `expires` was before the day the profile was loaded: the waiver no longer
    /// waives, and the run names it. Not part of the profile's digest, which stays the
    /// same from one day to the next.
    #[serde(skip)]
    pub expired: bool,
}

/// A rule deciding whether a profile applies to a device; every field given must match.
///
/// A rule describes hardware; its `backend` says how tenants reach that hardware. An
/// accelerator PCI function that no backend of the run drives (a function of a replayed
/// capture, a GPU whose driver or runtime is missing: backend `pci`) is the same
/// hardware, so a rule that names its PCI vendor matches it whatever backend the rule
/// names: its host and PCI checks run, and its device checks are recorded as not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// The backend (`sim`, `opencl`, `cuda`, `vulkan`). A PCI function no backend drives
    /// matches a rule of any backend that gives `pci_vendor`.
    pub backend: Option<String>,
    /// The PCI vendor id (`0x10de`).
    pub pci_vendor: Option<u16>,
    /// PCI device ids, any of which matches.
    pub pci_device: Option<Vec<u16>>,
    /// A pattern for the device name, `*` matching any run of characters.
    pub name: Option<String>,
}

impl MatchRule {
    /// Whether `device` satisfies this rule.
    pub fn matches(&self, device: &DeviceInfo) -> bool {
        self.backend_matches(device)
            && self.pci_vendor.is_none_or(|v| device.pci_vendor == Some(v))
            && self
                .pci_device
                .as_ref()
                .is_none_or(|ids| device.pci_device.is_some_and(|d| ids.contains(&d)))
            && self.name.as_ref().is_none_or(|p| glob(p, &device.name))
    }

    /// Whether the rule's backend admits `device`: no backend given, the device's own
    /// backend, or a PCI function no backend drives when the rule names a PCI vendor.
    fn backend_matches(&self, device: &DeviceInfo) -> bool {
        match &self.backend {
            None => true,
            Some(b) if *b == device.backend => true,
            Some(_) => device.backend == crate::pci::BACKEND && self.pci_vendor.is_some(),
        }
    }

    /// How specifically the rule names `device`: a PCI device id beats a PCI vendor,
    /// which beats a name, which beats a backend; a backend counts only where it is the
    /// device's own (a PCI function matched through its ids was not matched by backend).
    fn specificity(&self, device: &DeviceInfo) -> usize {
        usize::from(self.backend.as_ref().is_some_and(|b| *b == device.backend))
            + usize::from(self.name.is_some())
            + 2 * usize::from(self.pci_vendor.is_some())
            + 4 * usize::from(self.pci_device.is_some())
    }
}

/// What [`best_fit`] found.
#[derive(Debug, PartialEq)]
pub enum Fit<'p> {
    /// This profile fits best.
    One(&'p Profile),
    /// No profile matches every device.
    None,
    /// Two profiles fit equally well.
    Tie(&'p Profile, &'p Profile),
}

/// Of `profiles`, the one for `devices` (which must all match it): a profile that extends
/// another matching one with match rules of its own is chosen over it (a SKU's profile
/// over its class's), then the one with the most specific match rule (a PCI device id
/// beats a vendor, a vendor a name, a name a backend alone); ids break no ties. A profile
/// that only inherits its parent's match rules (a lab's variant of a class) refines
/// nothing: it ties with its parent, and the user chooses.
pub fn best_fit<'p>(profiles: &'p [Profile], devices: &[&DeviceInfo]) -> Fit<'p> {
    let candidates: Vec<&Profile> = profiles
        .iter()
        .filter(|p| !devices.is_empty() && devices.iter().all(|d| p.matches(d)))
        .collect();
    let refined = |p: &Profile| {
        candidates.iter().any(|other| {
            other.id != p.id && other.matches != p.matches && other.chain.iter().skip(1).any(|a| *a == p.id)
        })
    };
    let mut ranked: Vec<(usize, &Profile)> = candidates
        .iter()
        .filter(|p| !refined(p))
        .map(|p| {
            let score = p
                .matches
                .iter()
                .flat_map(|rule| devices.iter().filter(|d| rule.matches(d)).map(|d| rule.specificity(d)))
                .max()
                .unwrap_or(0);
            (score, *p)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    match ranked.as_slice() {
        [] => Fit::None,
        [(best, a), (next, b), ..] if best == next => Fit::Tie(a, b),
        [(_, p), ..] => Fit::One(p),
    }
}

impl Profile {
    /// Whether the profile applies to `device`.
    pub fn matches(&self, device: &DeviceInfo) -> bool {
        self.matches.iter().any(|r| r.matches(device))
    }

    /// The profile's digest: `sha256:` and the hex sha256 of its canonical JSON.
    pub fn digest(&self) -> String {
        // Serialising plain data with string keys cannot fail; an empty digest would be
        // visibly wrong rather than silently shared.
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        format!("sha256:{}", crate::hex(&sha2::Sha256::digest(&canonical)))
    }

    /// The waivers that had expired when the profile was loaded, by check id.
    pub fn expired_waivers(&self) -> impl Iterator<Item = (&str, &Waiver)> {
        self.checks
            .iter()
            .filter_map(|(id, s)| s.waiver.as_ref().filter(|w| w.expired).map(|w| (id.as_str(), w)))
    }

    /// The checks that run in `tier`, in id order.
    pub fn checks_in(&self, tier: Tier) -> impl Iterator<Item = (&str, &CheckSettings)> {
        self.checks
            .iter()
            .filter(move |(_, s)| s.tiers.contains(&tier))
            .map(|(id, s)| (id.as_str(), s))
    }
}

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A problem at a place in a file.
    #[error("{file}:{line}:{column}: {message}\n{excerpt}")]
    At {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong and what was expected.
        message: String,
        /// The source line and a caret line under the offending text.
        excerpt: String,
    },
    /// A problem with a whole file or profile.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read.
    #[error("failed to read profile {path}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No profile by that id or path.
    #[error(
        "no profile `{name}`{} (looked in: {}). `hilt profiles` lists the profiles hilt can find",
        did_you_mean(nearest).map(|d| format!(": {d}")).unwrap_or_default(),
        searched.join(", ")
    )]
    NotFound {
        /// What was asked for.
        name: String,
        /// Where hilt looked.
        searched: Vec<String>,
        /// Ids of profiles hilt can find that `name` may have meant: those holding it
        /// (`h100` → `nvidia-h100-nvl`, `nvidia-h100-sxm`), else the one closest to it.
        nearest: Vec<String>,
    },
    /// Several problems in one profile file, each located.
    #[error("{}\n\n{} problems in {file}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n\n"), errors.len())]
    Several {
        /// The file.
        file: String,
        /// Every problem found, in the order of the file.
        errors: Vec<ProfileError>,
    },
}

/// At most this many problems are reported for one file.
const MAX_ERRORS: usize = 20;

/// One error, or several as one.
fn several(file: &str, mut errors: Vec<ProfileError>) -> ProfileError {
    errors.sort_by_key(|e| match e {
        ProfileError::At { line, column, .. } => (*line, *column),
        _ => (0, 0),
    });
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        ProfileError::Several {
            file: file.to_string(),
            errors,
        }
    }
}

/// Where profiles are found.
#[derive(Debug, Clone)]
pub struct Library {
    dirs: Vec<PathBuf>,
    builtins: bool,
}

/// One profile text and where it came from.
#[derive(Debug, Clone)]
struct Source {
    /// What error messages call it (a path, or `<builtin>/ID.toml`).
    name: String,
    /// The directory `extends` looks in first, if the source is a file.
    dir: Option<PathBuf>,
    text: String,
}

impl Library {
    /// The built-in profiles and the directories of `HILT_PROFILE_PATH`.
    pub fn standard() -> Library {
        let dirs = std::env::var_os("HILT_PROFILE_PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        Library { dirs, builtins: true }
    }

    /// Only these directories, and the built-ins if `builtins`.
    pub fn with_dirs(dirs: Vec<PathBuf>, builtins: bool) -> Library {
        Library { dirs, builtins }
    }

    /// Loads and resolves a profile given by id or by path (anything ending in `.toml` or
    /// holding a `/`). Waivers are judged against `today`.
    pub fn load(&self, spec: &str, catalogue: &Catalogue, today: Date) -> Result<Profile, ProfileError> {
        let source = if spec.ends_with(".toml") || spec.contains('/') {
            read_file(Path::new(spec))?
        } else {
            self.find(spec, None)?
        };
        let mut chain: Vec<(Source, RawProfile)> = Vec::new();
        let mut next = Some(source);
        while let Some(source) = next.take() {
            let raw = parse_raw(&source, catalogue)?;
            if let Some(parent) = &raw.extends {
                if chain.iter().any(|(_, r)| *r.id.get_ref() == *parent.get_ref())
                    || *raw.id.get_ref() == *parent.get_ref()
                {
                    let mut ids: Vec<&str> = chain.iter().map(|(_, r)| r.id.get_ref().as_str()).collect();
                    ids.push(raw.id.get_ref());
                    ids.push(parent.get_ref());
                    return Err(at(
                        &source,
                        parent.span(),
                        format!("inheritance cycle: {}", ids.join(" -> ")),
                    ));
                }
                next = Some(
                    self.find(parent.get_ref(), source.dir.as_deref())
                        .map_err(|e| match e {
                            ProfileError::NotFound { searched, nearest, .. } => at(
                                &source,
                                parent.span(),
                                format!(
                                    "`extends` names unknown profile `{}` (looked in: {}){}",
                                    parent.get_ref(),
                                    searched.join(", "),
                                    did_you_mean(&nearest).map(|d| format!("; {d}")).unwrap_or_default()
                                ),
                            ),
                            other => other,
                        })?,
                );
            }
            chain.push((source, raw));
        }
        resolve(chain, catalogue, today)
    }

    /// Every profile the library can find, by id, with the source it comes from.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml")
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    found
                        .entry(stem.to_string())
                        .or_insert_with(|| path.display().to_string());
                }
            }
        }
        if self.builtins {
            for (id, _) in BUILTIN {
                found
                    .entry((*id).to_string())
                    .or_insert_with(|| format!("<builtin>/{id}.toml"));
            }
        }
        found.into_iter().collect()
    }

    fn find(&self, id: &str, near: Option<&Path>) -> Result<Source, ProfileError> {
        let mut searched = Vec::new();
        for dir in near.into_iter().chain(self.dirs.iter().map(PathBuf::as_path)) {
            let path = dir.join(format!("{id}.toml"));
            if path.is_file() {
                return read_file(&path);
            }
            searched.push(dir.display().to_string());
        }
        if self.builtins {
            if let Some((_, text)) = BUILTIN.iter().find(|(b, _)| *b == id) {
                return Ok(Source {
                    name: format!("<builtin>/{id}.toml"),
                    dir: None,
                    text: (*text).to_string(),
                });
            }
            searched.push("<builtin>".into());
        }
        let known: Vec<String> = self.list().into_iter().map(|(known, _)| known).collect();
        // A part of an id (`h100`, `pocl`, `nvidia-h100`) means the ids that hold it; a
        // misspelt one, the closest id. Closeness alone would answer `nvidia-h100` with
        // `nvidia-gh200`, two edits away, over the H100 profiles.
        let lower = id.to_ascii_lowercase();
        let mut nearest: Vec<String> = known
            .iter()
            .filter(|k| lower.len() >= 2 && k.to_ascii_lowercase().contains(&lower))
            .cloned()
            .collect();
        if nearest.is_empty() {
            nearest.extend(
                known
                    .into_iter()
                    .map(|k| (crate::check::edit_distance(&k, id), k))
                    .filter(|(d, _)| *d <= id.len().max(4) / 3 + 2)
                    .min()
                    .map(|(_, k)| k),
            );
        }
        Err(ProfileError::NotFound {
            name: id.into(),
            searched,
            nearest,
        })
    }
}

/// "did you mean `a`?", "did you mean `a` or `b`?", "did you mean `a`, `b` or `c`?", for
/// up to five ids; `None` for none.
fn did_you_mean(ids: &[String]) -> Option<String> {
    let quoted: Vec<String> = ids.iter().take(5).map(|i| format!("`{i}`")).collect();
    let (last, rest) = quoted.split_last()?;
    Some(if rest.is_empty() {
        format!("did you mean {last}?")
    } else {
        format!("did you mean {} or {last}?", rest.join(", "))
    })
}

fn read_file(path: &Path) -> Result<Source, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Source {
        name: path.display().to_string(),
        dir: path.parent().map(Path::to_path_buf),
        text,
    })
}

/// A profile file as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// The profile's id: lower-case words joined by `-`, equal to the file's stem.
    #[schemars(with = "String")]
    id: Spanned<String>,
    /// A human title.
    title: String,
    /// The profile's own version.
    version: String,
    /// The id of the profile this one inherits from.
    #[schemars(with = "Option<String>")]
    extends: Option<Spanned<String>>,
    /// Whether results under this profile can certify a platform (default false).
    certifying: Option<bool>,
    /// The tier used without `--tier` (default `standard`).
    default_tier: Option<Tier>,
    /// The watchdog deadline of each tenant call, seconds, 1 to 86400 (default 60).
    #[schemars(with = "Option<u64>", range(min = 1, max = 86400))]
    tenant_timeout_s: Option<Spanned<u64>>,
    /// How many accelerators a run must examine, 1 to 4096; fewer makes it inconclusive
    /// (`hilt run --expect-devices` overrides it). A site's profile for a node type sets
    /// it, e.g. 8 for an eight-GPU node.
    #[schemars(with = "Option<u32>", range(min = 1, max = 4096))]
    expect_devices: Option<Spanned<u32>>,
    /// The largest per-attempt leak probability a pass of a probabilistic check (the
    /// residue checks) may leave open, above 0 and below 1 (default 0.05). With
    /// `confidence` it sets how many clean attempts those checks make, at most 10000.
    #[schemars(with = "Option<f64>", extend("exclusiveMinimum" = 0.0, "exclusiveMaximum" = 1.0))]
    max_leak_probability: Option<Spanned<f64>>,
    /// The confidence of that statement, above 0 and below 1 (default 0.95).
    #[schemars(with = "Option<f64>", extend("exclusiveMinimum" = 0.0, "exclusiveMaximum" = 1.0))]
    confidence: Option<Spanned<f64>>,
    /// `hilt fleet` flags a node's measurement as an outlier when it lies more than this
    /// many median absolute deviations from the fleet's median, for results run under
    /// this profile (above 0, at most 1000; default: `hilt fleet`'s, 5).
    #[schemars(with = "Option<f64>", range(min = 0, max = 1000))]
    fleet_outlier_mad: Option<Spanned<f64>>,
    /// Which devices the profile applies to; a profile without rules is abstract.
    #[serde(rename = "match")]
    matches: Option<Vec<MatchRule>>,
    /// Knobs for simulated devices.
    #[schemars(with = "Option<SimKnobs>")]
    sim: Option<toml::Table>,
    /// Checks by id.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawCheck>")]
    check: BTreeMap<Spanned<String>, RawCheck>,
}

/// A check's table in a profile file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// `mandatory`, `recommended` or `informational`.
    level: Option<Level>,
    /// The tiers the check runs in (default: all).
    tiers: Option<Vec<Tier>>,
    /// `false` removes a check inherited from a parent profile.
    enabled: Option<bool>,
    /// The check's parameters; each check documents its own.
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    params: Option<toml::Table>,
    /// An accepted deviation.
    #[schemars(with = "Option<RawWaiver>")]
    waiver: Option<Spanned<RawWaiver>>,
}

/// A waiver as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWaiver {
    /// Why the deviation is accepted.
    reason: String,
    /// The last day it holds, a TOML date (`2027-03-31`).
    #[schemars(with = "String")]
    expires: toml::value::Datetime,
}

fn parse_raw(source: &Source, catalogue: &Catalogue) -> Result<RawProfile, ProfileError> {
    // Every syntax error the parser can recover from, not just the first.
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(&source.text);
    if !syntax.is_empty() {
        return Err(several(
            &source.name,
            syntax.iter().map(|e| from_toml(source, e)).collect(),
        ));
    }
    let mut errors = Vec::new();
    // Keys and types, one error at a time: each entry found wrong is reported and taken
    // out, so that the next one shows too. An error without a place after that (a field
    // now missing) is only the echo of one already reported.
    let mut table = doc.into_inner();
    let whole = 0..source.text.len();
    let raw = loop {
        let value = Spanned::new(whole.clone(), DeValue::Table(table.clone()));
        match RawProfile::deserialize(ValueDeserializer::from(value)) {
            Ok(raw) => break Some(raw),
            Err(e) if e.span().is_none() && !errors.is_empty() => break None,
            Err(e) => {
                errors.push(from_toml(source, &e));
                let removed = e.span().is_some_and(|span| remove_entry_at(&mut table, span.start));
                if !removed || errors.len() >= MAX_ERRORS {
                    break None;
                }
            }
        }
    };
    let Some(raw) = raw else {
        return Err(several(&source.name, errors));
    };
    let id = raw.id.get_ref();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errors.push(at(
            source,
            raw.id.span(),
            format!("profile id `{id}` must be lower-case letters, digits and `-`"),
        ));
    } else if source.dir.is_some() {
        let stem = Path::new(&source.name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != id {
            errors.push(at(
                source,
                raw.id.span(),
                format!("profile id `{id}` differs from its file name `{stem}.toml`"),
            ));
        }
    }
    // The spanned document, for checking nested tables where they stand.
    let doc = DeValue::Table(table);
    if let Some(sim) = doc.get("sim") {
        match SimKnobs::deserialize(ValueDeserializer::from(sim.clone())) {
            Err(e) => errors.push(from_toml(source, &e)),
            Ok(knobs) => {
                if let Err(message) = knobs.validate() {
                    errors.push(at(source, sim.span(), message));
                }
            }
        }
    }
    if let Some(t) = &raw.tenant_timeout_s
        && !(1..=86_400).contains(t.get_ref())
    {
        errors.push(at(
            source,
            t.span(),
            format!("`tenant_timeout_s` must be 1 to 86400, not {}", t.get_ref()),
        ));
    }
    if let Some(n) = &raw.expect_devices
        && !(1..=4096).contains(n.get_ref())
    {
        errors.push(at(
            source,
            n.span(),
            format!("`expect_devices` must be 1 to 4096, not {}", n.get_ref()),
        ));
    }
    if let Some(k) = &raw.fleet_outlier_mad
        && !(k.get_ref().is_finite() && *k.get_ref() > 0.0 && *k.get_ref() <= 1000.0)
    {
        errors.push(at(
            source,
            k.span(),
            format!(
                "`fleet_outlier_mad` must be above 0 and at most 1000, not {}",
                k.get_ref()
            ),
        ));
    }
    for (name, value) in [
        ("max_leak_probability", &raw.max_leak_probability),
        ("confidence", &raw.confidence),
    ] {
        if let Some(v) = value
            && !(*v.get_ref() > 0.0 && *v.get_ref() < 1.0)
        {
            errors.push(at(
                source,
                v.span(),
                format!("`{name}` must be above 0 and below 1, not {}", v.get_ref()),
            ));
        }
    }
    for (id, check) in &raw.check {
        let Some(def) = catalogue.get(id.get_ref()) else {
            let hint = match catalogue.nearest(id.get_ref()) {
                Some(n) => format!("; did you mean `{n}`?"),
                None => {
                    let all: Vec<&str> = catalogue.checks().iter().map(|c| c.id).collect();
                    if all.len() <= 12 {
                        format!("; known checks: {}", all.join(", "))
                    } else {
                        "; `hilt checks` lists the known checks".to_string()
                    }
                }
            };
            errors.push(at(source, id.span(), format!("unknown check `{}`{hint}", id.get_ref())));
            continue;
        };
        if let Some(params) = doc
            .get("check")
            .and_then(|c| c.get_ref().get(id.get_ref().as_str()))
            .and_then(|c| c.get_ref().get("params"))
        {
            match (def.params.from_toml)(ValueDeserializer::from(params.clone())) {
                Err(e) => errors.push(from_toml(source, &e)),
                Ok(Err(message)) => {
                    errors.push(at(
                        source,
                        params.span(),
                        format!("check `{}`: {message}", id.get_ref()),
                    ));
                }
                Ok(Ok(())) => {}
            }
        }
        if let Some(waiver) = &check.waiver
            && date_of(&waiver.get_ref().expires).is_none()
        {
            errors.push(at(
                source,
                waiver.span(),
                "waiver `expires` must be a plain date such as 2027-03-31".into(),
            ));
        }
    }
    if errors.is_empty() {
        Ok(raw)
    } else {
        Err(several(&source.name, errors))
    }
}

/// Takes out of `table` the innermost entry (a key and its value) whose key or value holds
/// byte `at` of the file; false when none does.
fn remove_entry_at(table: &mut toml::de::DeTable<'_>, at: usize) -> bool {
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        if key.span().contains(&at) {
            hit = Some(key.get_ref().clone());
            break;
        }
        if value.span().contains(&at) || value_holds(value.get_ref(), at) {
            let inner = match value.get_mut() {
                DeValue::Table(t) => remove_entry_at(t, at),
                DeValue::Array(items) => items.iter_mut().any(|item| match item.get_mut() {
                    DeValue::Table(t) => remove_entry_at(t, at),
                    _ => false,
                }),
                _ => false,
            };
            if inner {
                return true;
            }
            hit = Some(key.get_ref().clone());
            break;
        }
    }
    match hit {
        Some(key) => table.remove(key.as_ref()).is_some(),
        None => false,
    }
}

/// Whether a table or array holds byte `at` somewhere inside (a table's own span may not
/// cover entries written under its header further down the file).
fn value_holds(value: &DeValue<'_>, at: usize) -> bool {
    match value {
        DeValue::Table(t) => t
            .iter()
            .any(|(k, v)| k.span().contains(&at) || v.span().contains(&at) || value_holds(v.get_ref(), at)),
        DeValue::Array(items) => items
            .iter()
            .any(|v| v.span().contains(&at) || value_holds(v.get_ref(), at)),
        _ => false,
    }
}

fn resolve(chain: Vec<(Source, RawProfile)>, catalogue: &Catalogue, today: Date) -> Result<Profile, ProfileError> {
    let leaf_file = chain.first().map(|(s, _)| s.name.clone()).unwrap_or_default();
    let ids: Vec<String> = chain.iter().map(|(_, r)| r.id.get_ref().clone()).collect();
    let mut certifying = false;
    let mut default_tier = Tier::Standard;
    let mut tenant_timeout_s = 60;
    let mut expect_devices = None;
    let mut leak_target = LeakTarget::default();
    // Where the leak target was last set, for an error about the two values together.
    let mut leak_decl: Option<(Source, std::ops::Range<usize>)> = None;
    let mut fleet_outlier_mad = None;
    let mut matches = Vec::new();
    let mut sim = toml::Table::new();
    struct Merged {
        level: Option<Level>,
        tiers: Option<Vec<Tier>>,
        params: toml::Table,
        waiver: Option<RawWaiver>,
        /// Where the check was last declared, for errors found only after merging.
        decl: (Source, std::ops::Range<usize>),
    }
    let mut checks: BTreeMap<String, Merged> = BTreeMap::new();
    let (mut title, mut version) = (String::new(), String::new());
    // Root ancestor first, so that each child overrides what it inherits.
    for (source, raw) in chain.into_iter().rev() {
        title = raw.title;
        version = raw.version;
        certifying = raw.certifying.unwrap_or(certifying);
        default_tier = raw.default_tier.unwrap_or(default_tier);
        tenant_timeout_s = raw.tenant_timeout_s.map_or(tenant_timeout_s, Spanned::into_inner);
        expect_devices = raw.expect_devices.map(Spanned::into_inner).or(expect_devices);
        if let Some(p) = raw.max_leak_probability {
            leak_decl = Some((source.clone(), p.span()));
            leak_target.max_leak_probability = p.into_inner();
        }
        if let Some(c) = raw.confidence {
            leak_decl = Some((source.clone(), c.span()));
            leak_target.confidence = c.into_inner();
        }
        fleet_outlier_mad = raw.fleet_outlier_mad.map(Spanned::into_inner).or(fleet_outlier_mad);
        if let Some(m) = raw.matches {
            matches = m;
        }
        sim.extend(raw.sim.unwrap_or_default());
        for (id, check) in raw.check {
            let span = id.span();
            let id = id.into_inner();
            if check.enabled == Some(false) {
                checks.remove(&id);
                continue;
            }
            let entry = checks.entry(id).or_insert_with(|| Merged {
                level: None,
                tiers: None,
                params: toml::Table::new(),
                waiver: None,
                decl: (source.clone(), span.clone()),
            });
            entry.level = check.level.or(entry.level);
            entry.tiers = check.tiers.or(entry.tiers.take());
            entry.params.extend(check.params.unwrap_or_default());
            entry.waiver = check.waiver.map(Spanned::into_inner).or(entry.waiver.take());
            entry.decl = (source.clone(), span);
        }
    }
    if let Err(message) = leak_target.validate() {
        return Err(match leak_decl {
            Some((source, span)) => at(&source, span, message),
            None => ProfileError::Invalid {
                file: leaf_file,
                message,
            },
        });
    }
    let sim: SimKnobs = toml::Value::Table(sim)
        .try_into()
        .map_err(|e: toml::de::Error| ProfileError::Invalid {
            file: leaf_file.clone(),
            message: format!("[sim]: {}", e.message()),
        })?;
    let mut resolved = BTreeMap::new();
    let mut errors = Vec::new();
    for (id, m) in checks {
        let (decl, span) = &m.decl;
        let fail = |message: String| at(decl, span.clone(), message);
        let Some(def) = catalogue.get(&id) else {
            errors.push(fail(format!("unknown check `{id}`")));
            continue;
        };
        let Some(level) = m.level else {
            errors.push(fail(format!(
                "check `{id}` has no `level` here or in any profile it extends"
            )));
            continue;
        };
        let params = match serde_json::to_value(&m.params)
            .map_err(|e| e.to_string())
            .and_then(|p| (def.params.from_json)(p).map_err(|e| format!("check `{id}`: {e}")))
        {
            Ok(p) => p,
            Err(message) => {
                errors.push(fail(message));
                continue;
            }
        };
        let tiers = m
            .tiers
            .map(|t| t.into_iter().collect())
            .unwrap_or_else(|| Tier::ALL.into_iter().collect());
        let waiver = m.waiver.and_then(|w| {
            date_of(&w.expires).map(|expires| Waiver {
                reason: w.reason,
                expired: expires < today,
                expires,
            })
        });
        resolved.insert(
            id,
            CheckSettings {
                level,
                tiers,
                params,
                waiver,
            },
        );
    }
    if !errors.is_empty() {
        return Err(several(&leaf_file, errors));
    }
    Ok(Profile {
        id: ids.first().cloned().unwrap_or_default(),
        title,
        version,
        chain: ids,
        certifying,
        default_tier,
        tenant_timeout_s,
        expect_devices,
        leak_target,
        fleet_outlier_mad,
        matches,
        sim,
        checks: resolved,
    })
}

/// The JSON Schema of profile files, with each check's own parameter schema filled in,
/// as checked in at `profiles/profile.schema.json` for editors.
pub fn profile_schema(catalogue: &Catalogue) -> serde_json::Value {
    let mut schema = schemars::schema_for!(RawProfile).to_value();
    let mut per_check = serde_json::Map::new();
    let mut defs = serde_json::Map::new();
    for def in catalogue.checks() {
        let mut params = def.params.schema().to_value();
        if let Some(obj) = params.as_object_mut() {
            obj.remove("$schema");
            // Nested definitions move to the top, where their `#/$defs/...` refs point.
            if let Some(serde_json::Value::Object(nested)) = obj.remove("$defs") {
                defs.extend(nested);
            }
        }
        per_check.insert(
            def.id.to_string(),
            serde_json::json!({
                "description": def.title,
                "allOf": [{ "$ref": "#/$defs/RawCheck" }],
                "properties": { "params": params },
            }),
        );
    }
    if let Some(serde_json::Value::Object(top)) = schema.pointer_mut("/$defs") {
        top.extend(defs);
    }
    if let Some(check) = schema.pointer_mut("/properties/check") {
        *check = serde_json::json!({
            "description": "Checks by id.",
            "type": "object",
            "properties": per_check,
            "additionalProperties": false,
        });
    }
    schema
}

fn date_of(dt: &toml::value::Datetime) -> Option<Date> {
    match (dt.date, dt.time, dt.offset) {
        (Some(d), None, None) => Some(Date {
            year: i32::from(d.year),
            month: d.month,
            day: d.day,
        }),
        _ => None,
    }
}

fn from_toml(source: &Source, e: &toml::de::Error) -> ProfileError {
    match e.span() {
        Some(span) => at(source, span, e.message().trim_end().to_string()),
        None => ProfileError::Invalid {
            file: source.name.clone(),
            message: e.message().trim_end().to_string(),
        },
    }
}

/// A located error, with the source line and a caret line under the span.
fn at(source: &Source, span: std::ops::Range<usize>, message: String) -> ProfileError {
    let text = &source.text;
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let src_line = &text[line_start..line_end];
    let width = text[start..span.end.clamp(start, line_end)].chars().count().max(1);
    let gutter = " ".repeat(line.to_string().len());
    let excerpt = format!(
        "{gutter} |\n{line} | {src_line}\n{gutter} | {}{}",
        " ".repeat(column - 1),
        "^".repeat(width)
    );
    ProfileError::At {
        file: source.name.clone(),
        line,
        column,
        message,
        excerpt,
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(mut remaining) = text.strip_prefix(head) else {
                return false;
            };
            // Try every split point for the rest of the pattern.
            loop {
                if glob(rest, remaining) {
                    return true;
                }
                let mut chars = remaining.chars();
                if chars.next().is_none() {
                    return false;
                }
                remaining = chars.as_str();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(backend: &str, vendor: u16, id: u16) -> DeviceInfo {
        DeviceInfo {
            id: format!("{backend}0"),
            backend: backend.into(),
            name: "GH100 [H100 SXM5 80GB]".into(),
            vendor: None,
            pci_vendor: Some(vendor),
            pci_device: Some(id),
            pci_address: Some("0000:17:00.0".into()),
            simulated: false,
            global_mem_bytes: 0,
            local_mem_bytes: 0,
            compute_units: 0,
            facts: BTreeMap::new(),
        }
    }

    fn rule(backend: Option<&str>, vendor: Option<u16>, ids: Option<Vec<u16>>) -> MatchRule {
        MatchRule {
            backend: backend.map(str::to_string),
            pci_vendor: vendor,
            pci_device: ids,
            name: None,
        }
    }

    fn profile(id: &str, parent: Option<&str>, matches: Vec<MatchRule>) -> Profile {
        Profile {
            id: id.into(),
            title: id.into(),
            version: "0".into(),
            chain: std::iter::once(id).chain(parent).map(str::to_string).collect(),
            certifying: true,
            default_tier: Tier::Standard,
            tenant_timeout_s: 60,
            expect_devices: None,
            fleet_outlier_mad: None,
            leak_target: LeakTarget::default(),
            matches,
            sim: SimKnobs::default(),
            checks: BTreeMap::new(),
        }
    }

    #[test]
    fn a_rule_of_any_backend_matches_the_same_hardware_seen_only_as_a_pci_function() {
        let pci = device(crate::pci::BACKEND, 0x10de, 0x2330);
        let cuda_rule = rule(Some("cuda"), Some(0x10de), Some(vec![0x2330]));
        assert!(cuda_rule.matches(&pci), "the H100 of a capture is an H100");
        assert!(cuda_rule.matches(&device("cuda", 0x10de, 0x2330)));
        assert!(
            !cuda_rule.matches(&device("opencl", 0x10de, 0x2330)),
            "another backend is not"
        );
        assert!(!cuda_rule.matches(&device(crate::pci::BACKEND, 0x10de, 0x2331)));
        // A rule that names no hardware (any OpenCL device) says nothing about a function.
        assert!(!rule(Some("opencl"), None, None).matches(&pci));
        assert!(!rule(Some("sim"), None, None).matches(&pci));
    }

    #[test]
    fn on_replay_a_sku_profile_still_beats_its_class_and_backends_add_no_specificity() {
        let pci = device(crate::pci::BACKEND, 0x10de, 0x2330);
        let class = profile(
            "class",
            None,
            vec![rule(Some("cuda"), Some(0x10de), Some(vec![0x2330, 0x2331]))],
        );
        let sku = profile(
            "sku",
            Some("class"),
            vec![rule(Some("cuda"), Some(0x10de), Some(vec![0x2330]))],
        );
        let lab = profile("lab", None, vec![rule(None, Some(0x10de), Some(vec![0x2330]))]);
        let profiles = [class.clone(), sku.clone()];
        assert_eq!(best_fit(&profiles, &[&pci]), Fit::One(&profiles[1]));
        // A profile of no backend ties with a CUDA one on a function: the backend did not
        // match it, so it adds nothing.
        let tied = [lab, class];
        assert!(matches!(best_fit(&tied, &[&pci]), Fit::Tie(..)));
        let cuda = device("cuda", 0x10de, 0x2330);
        assert_eq!(
            best_fit(&tied, &[&cuda]),
            Fit::One(&tied[1]),
            "on CUDA the backend counts"
        );
    }

    #[test]
    fn glob_matches_stars_anywhere() {
        assert!(glob("NVIDIA H100*", "NVIDIA H100 80GB HBM3"));
        assert!(glob("*H100*", "NVIDIA H100 PCIe"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("*A100*", "NVIDIA H100"));
        assert!(glob("*", ""));
    }
}
