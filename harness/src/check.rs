//! What a check is, as the harness sees it: a definition with a run function, typed
//! parameters, and the context it runs in.
//!
//! The checks themselves live in the `hilt-suites` crate; the harness knows them only
//! through a [`Catalogue`] handed to it, so the engine never depends on the checks.

use std::collections::BTreeMap;
use std::time::Duration;

use hilt_results::{Better, Measurement, Tier};
use serde::{Serialize, de::DeserializeOwned};

use crate::accel::{DeviceInfo, DeviceSpec};
use crate::canary::CanaryKey;
use crate::confidence::LeakTarget;
use crate::hostfs::HostFs;
use crate::tenant::{Tenant, TenantError, TenantLauncher};

/// A check's definition.
pub struct CheckDef {
    /// The stable dotted id (`residue.global.cross_process`); its first segment is the suite.
    pub id: &'static str,
    /// A one-line title.
    pub title: &'static str,
    /// What the check does and why it matters, in a few sentences.
    pub description: &'static str,
    /// What to do when it fails, in a few sentences.
    pub remediation: &'static str,
    /// The requirement ids (from `profiles/requirements/ts-104-033.toml`) it gives
    /// evidence for.
    pub requirements: &'static [&'static str],
    /// The sim faults that must make it fail; the self-validation test holds it to that.
    pub faults: &'static [&'static str],
    /// What the check runs on: a device a tenant can open, the host, or a PCI function.
    pub scope: Scope,
    /// For host and PCI checks: the fixture trees under `tests/fixtures/hosts/` that must
    /// make it fail (the planted faults of checks that read the host's files).
    pub host_faults: &'static [&'static str],
    /// True when the check may share the device with other trials; residue and isolation
    /// checks need the device to themselves.
    pub concurrent: bool,
    /// Its parameters.
    pub params: ParamsSpec,
    /// Runs the check.
    pub run: fn(&mut CheckCtx<'_>) -> Finding,
}

impl CheckDef {
    /// The suite: the first segment of the id.
    pub fn suite(&self) -> &'static str {
        self.id.split('.').next().unwrap_or(self.id)
    }

    /// The trial name of this check on `device`: `suite::rest::of::id::device`.
    pub fn trial_name(&self, device: &str) -> String {
        format!("{}::{device}", self.id.replace('.', "::"))
    }
}

/// The backend name of the trial device that host-scope checks run on.
pub const HOST_BACKEND: &str = "host";

/// The trial device of host-scope checks: the machine itself, present in every run.
pub fn host_device() -> TrialDevice {
    TrialDevice {
        info: DeviceInfo {
            id: HOST_BACKEND.into(),
            backend: HOST_BACKEND.into(),
            name: "this host".into(),
            vendor: None,
            pci_vendor: None,
            pci_device: None,
            pci_address: None,
            simulated: false,
            global_mem_bytes: 0,
            local_mem_bytes: 0,
            compute_units: 0,
            facts: BTreeMap::new(),
        },
        spec: DeviceSpec::NotOpenable,
    }
}

/// What a check runs on, and so which trial devices get a trial of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A device that tenants open through an accelerator backend (the residue checks).
    Device,
    /// The host, once per run: its firmware, kernel and services (trial device `host`).
    Host,
    /// Each accelerator PCI function: its sysfs view (link, IOMMU group, option ROM,
    /// driver). Runs on any non-simulated device with a PCI address.
    Pci,
}

impl Scope {
    /// Whether a check of this scope runs on `device`.
    pub fn applies_to(self, device: &TrialDevice) -> bool {
        let host = device.info.backend == HOST_BACKEND;
        match self {
            Scope::Device => !host && device.spec.openable(),
            Scope::Host => host,
            Scope::Pci => !host && !device.info.simulated && device.info.pci_address.is_some(),
        }
    }

    /// The scope's name in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::Host => "host",
            Scope::Pci => "pci",
        }
    }
}

/// The parameters a check accepts.
pub trait CheckParams: Serialize + DeserializeOwned + schemars::JsonSchema + Default {
    /// Rejects values that are well-typed but meaningless (a share above 1).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A check's parameter type, erased so that definitions can live in a static table.
#[derive(Clone, Copy)]
pub struct ParamsSpec {
    pub(crate) default: fn() -> serde_json::Value,
    /// Deserialises one file's `params` table where it stands (errors carry its spans),
    /// then applies the type's own validation (the inner error).
    pub(crate) from_toml: for<'a> fn(toml::de::ValueDeserializer<'a>) -> Result<Result<(), String>, toml::de::Error>,
    pub(crate) from_json: fn(serde_json::Value) -> Result<serde_json::Value, String>,
    pub(crate) schema: fn() -> schemars::Schema,
}

impl ParamsSpec {
    /// The spec of parameter type `P`.
    pub const fn of<P: CheckParams>() -> ParamsSpec {
        ParamsSpec {
            default: default_json::<P>,
            from_toml: from_toml::<P>,
            from_json: from_json::<P>,
            schema: schema_of::<P>,
        }
    }

    /// The JSON Schema of the parameters.
    pub fn schema(&self) -> schemars::Schema {
        (self.schema)()
    }

    /// The default parameters, as JSON.
    pub fn default_json(&self) -> serde_json::Value {
        (self.default)()
    }
}

fn default_json<P: CheckParams>() -> serde_json::Value {
    serde_json::to_value(P::default()).unwrap_or(serde_json::Value::Null)
}

fn from_toml<P: CheckParams>(de: toml::de::ValueDeserializer<'_>) -> Result<Result<(), String>, toml::de::Error> {
    P::deserialize(de).map(|p| p.validate())
}

fn from_json<P: CheckParams>(v: serde_json::Value) -> Result<serde_json::Value, String> {
    let p: P = serde_json::from_value(v).map_err(|e| e.to_string())?;
    p.validate()?;
    serde_json::to_value(&p).map_err(|e| e.to_string())
}

fn schema_of<P: CheckParams>() -> schemars::Schema {
    schemars::schema_for!(P)
}

/// The parameters of checks that take none.
#[derive(Debug, Default, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl CheckParams for NoParams {}

/// Every check hilt knows, in a fixed order.
#[derive(Clone)]
pub struct Catalogue {
    checks: Vec<&'static CheckDef>,
}

impl Catalogue {
    /// A catalogue of these checks.
    pub fn new(checks: Vec<&'static CheckDef>) -> Catalogue {
        Catalogue { checks }
    }

    /// Every check.
    pub fn checks(&self) -> &[&'static CheckDef] {
        &self.checks
    }

    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&'static CheckDef> {
        self.checks.iter().copied().find(|c| c.id == id)
    }

    /// The known id nearest to `id`, for "did you mean" hints.
    pub fn nearest(&self, id: &str) -> Option<&'static str> {
        self.checks
            .iter()
            .map(|c| (edit_distance(c.id, id), c.id))
            .filter(|(d, _)| *d <= id.len().max(4) / 3 + 2)
            .min()
            .map(|(_, c)| c)
    }
}

/// What a check found, before the harness records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// The platform met the requirement.
    Pass,
    /// The platform broke the requirement.
    Fail(String),
    /// The check does not apply here.
    NotApplicable(String),
    /// The check applies to the platform, but the backend that drives the device cannot
    /// perform it (the foreign-pointer check through OpenCL, whose buffers have no raw
    /// device address). Recorded as `not_applicable` with the backends that can perform
    /// it, so that a certification is inconclusive for it, never failed.
    NotExamined {
        /// Why this backend cannot perform it.
        reason: String,
        /// The backends that can (`cuda`).
        examined_by: Vec<String>,
    },
    /// The check could not establish the fact.
    Inconclusive(String),
    /// The harness or environment failed.
    Error(String),
}

/// The device a trial runs on, as the check sees it.
#[derive(Debug, Clone)]
pub struct TrialDevice {
    /// Its identity and capabilities.
    pub info: DeviceInfo,
    /// How a tenant opens it.
    pub spec: DeviceSpec,
}

/// Everything a running check may use, and where its measurements and evidence go.
pub struct CheckCtx<'a> {
    /// The device under test.
    pub device: &'a TrialDevice,
    /// The run's canary key; checks derive per-role keys from it.
    pub key: CanaryKey,
    /// The tier the run is in: the certification tier examines the whole device.
    pub tier: Tier,
    /// The profile's target for probabilistic checks: how strong a pass must be.
    pub leak_target: LeakTarget,
    params: &'a serde_json::Value,
    launcher: &'a TenantLauncher,
    host: HostFs,
    pub(crate) measurements: Vec<Measurement>,
    pub(crate) evidence: BTreeMap<String, serde_json::Value>,
}

impl<'a> CheckCtx<'a> {
    /// A context for running one check.
    pub fn new(
        device: &'a TrialDevice,
        key: CanaryKey,
        params: &'a serde_json::Value,
        launcher: &'a TenantLauncher,
    ) -> CheckCtx<'a> {
        CheckCtx {
            device,
            key,
            tier: Tier::Standard,
            leak_target: LeakTarget::default(),
            params,
            launcher,
            host: HostFs::live(),
            measurements: Vec::new(),
            evidence: BTreeMap::new(),
        }
    }

    /// The same context in `tier`, under the profile's `leak_target` (default: the
    /// standard tier, below 5 % at 95 % confidence).
    pub fn with_run(mut self, tier: Tier, leak_target: LeakTarget) -> CheckCtx<'a> {
        self.tier = tier;
        self.leak_target = leak_target;
        self
    }

    /// The same context reading the host's files under `host` (default: the live host).
    pub fn with_host(mut self, host: HostFs) -> CheckCtx<'a> {
        self.host = host;
        self
    }

    /// The host's files, through the run's root (`--sysfs-root`).
    pub fn host(&self) -> &HostFs {
        &self.host
    }

    /// The check's parameters, as validated when the profile was loaded.
    pub fn params<P: CheckParams>(&self) -> Result<P, Finding> {
        serde_json::from_value(self.params.clone())
            .map_err(|e| Finding::Error(format!("parameters do not fit the check: {e}")))
    }

    /// Runs a check body with its parameters: parameters that do not fit and tenant
    /// failures (hung, crashed, refused) become `Error` findings, the tenant's stderr kept
    /// as evidence. Most run functions are this and one body.
    pub fn with_params<P: CheckParams>(
        &mut self,
        body: impl FnOnce(&mut CheckCtx<'a>, &P) -> Result<Finding, TenantError>,
    ) -> Finding {
        match self.params::<P>() {
            Ok(params) => body(self, &params).unwrap_or_else(|e| self.tenant_failed(e)),
            Err(finding) => finding,
        }
    }

    /// Starts a tenant process with the device open.
    pub fn spawn_tenant(&mut self, role: &str) -> Result<Tenant, TenantError> {
        let tenant = Tenant::spawn(self.launcher, role, &self.device.spec)?;
        self.evidence(&format!("tenant_{role}_pid"), tenant.pid());
        Ok(tenant)
    }

    /// The watchdog deadline of every tenant call.
    pub fn tenant_timeout(&self) -> Duration {
        self.launcher.timeout
    }

    /// Records a measurement.
    pub fn measure(&mut self, name: &str, value: f64, unit: &str, threshold: Option<f64>, better: Better) {
        // JSON has no NaN or infinity: such a value would be written as `null` and the
        // record could no longer be read (or signed). It is evidence of a bug, kept as text.
        if !value.is_finite() || threshold.is_some_and(|t| !t.is_finite()) {
            self.evidence(
                &format!("invalid_measurement.{name}"),
                format!("{value} {unit} (threshold {threshold:?})"),
            );
            return;
        }
        self.measurements.push(Measurement {
            name: name.into(),
            value,
            unit: unit.into(),
            threshold,
            better,
        });
    }

    /// Records a piece of evidence.
    pub fn evidence(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.evidence.insert(key.into(), value.into());
    }

    /// Turns a tenant failure into an `Error` finding, keeping its stderr as evidence.
    pub fn tenant_failed(&mut self, err: TenantError) -> Finding {
        if let Some(tail) = err.stderr_tail() {
            self.evidence("tenant_stderr_tail", tail);
        }
        Finding::Error(err.to_string())
    }
}

/// Levenshtein distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
