//! The requirement catalogue of ETSI TS 104 033, under this project's own stable ids.
//!
//! The catalogue lives in `profiles/requirements/ts-104-033.toml` and is built into the
//! binary. Every check names the requirement ids it gives evidence for; a test holds every
//! named id to this catalogue.

use serde::{Deserialize, Serialize};

/// The catalogue text, as built into the binary.
pub const TS_104_033: &str = include_str!("../../profiles/requirements/ts-104-033.toml");

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The stable id (`DP-7`).
    pub id: String,
    /// The group (`data-protection`).
    pub group: String,
    /// One line, in this project's words.
    pub summary: String,
    /// How well the public record supports it.
    pub confidence: Confidence,
    /// The clause of the specification, empty until the normative text has been read.
    pub clause: String,
}

/// How well the public record supports a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// ETSI said so itself.
    StatedByEtsi,
    /// Secondary coverage of the specification reports it.
    ReportedInCoverage,
    /// Inferred from related material or engineering judgement.
    Inferred,
}

impl Confidence {
    /// The name used in the catalogue.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::StatedByEtsi => "stated-by-etsi",
            Confidence::ReportedInCoverage => "reported-in-coverage",
            Confidence::Inferred => "inferred",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    requirement: Vec<Requirement>,
}

/// Parses a requirement catalogue.
pub fn parse(text: &str) -> Result<Vec<Requirement>, toml::de::Error> {
    toml::from_str::<File>(text).map(|f| f.requirement)
}

/// The built-in TS 104 033 catalogue.
pub fn ts_104_033() -> Vec<Requirement> {
    // The text is built in and covered by a test; an empty catalogue would make every
    // check's requirement ids fail that test loudly.
    parse(TS_104_033).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_parses_with_unique_ids() {
        let reqs = parse(TS_104_033).expect("catalogue parses");
        assert!(reqs.len() >= 40, "only {} requirements", reqs.len());
        let mut ids: Vec<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), reqs.len(), "duplicate requirement ids");
        assert!(reqs.iter().any(|r| r.id == "DP-7"));
    }
}
