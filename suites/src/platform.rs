//! Suite `platform`: the host's boot integrity, kernel hardening, TPM and remote root
//! access. These checks read the host's files (through `--sysfs-root`); where the host
//! lacks the facility being checked (no UEFI, no module loading, no SSH server) they are
//! `not_applicable` with the reason, and where hilt cannot see it (securityfs not
//! mounted, a root-only file) they are `inconclusive`.

use hilt_harness::check::{CheckCtx, CheckDef, CheckParams, Finding, NoParams, ParamsSpec, Scope};
use hilt_harness::efi;
use hilt_harness::hostfs::HostFs;
use hilt_harness::sshd;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hostread::{self, optional};

/// `platform.secure_boot`.
pub static SECURE_BOOT: CheckDef = CheckDef {
    id: "platform.secure_boot",
    title: "The host booted with UEFI secure boot enforcing signatures",
    description: "Judges whether signatures are enforced at boot, not only whether the \
        firmware says secure boot is on. Reads the UEFI variables `SecureBoot` (must be 1), \
        `SetupMode` (1: no platform key, nothing is verified), `AuditMode` (1: failures are \
        only logged), `DeployedMode` (evidence), and shim's `MokSBStateRT` (non-zero: shim was \
        told not to validate what it loads) and `MokIgnoreDB` (evidence), through every \
        interface the kernel offers: efivarfs, the sysfs efivars directory of kernels before \
        6.0, and shim's MOK variable table. A variable that exists with value 0 is no \
        finding; a non-volatile `MokSBStateRT` was not set by shim at this boot and is \
        ignored, as the kernel ignores it. Not applicable on a host booted without UEFI (no \
        /sys/firmware/efi); inconclusive when no interface can be read.",
    remediation: "Enable secure boot in the firmware setup with the platform keys enrolled \
        (leave setup and audit mode), re-enable shim's validation (`mokutil \
        --enable-validation`, then confirm in MokManager at the next boot), and boot a signed \
        shim, boot loader and kernel.",
    requirements: &["IP-1"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &[
        "secure-boot-off",
        "shim-insecure",
        "shim-insecure-mokvar",
        "shim-insecure-legacy",
        "setup-mode",
        "audit-mode",
    ],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            if !fs.exists("/sys/firmware/efi") {
                return Ok(Finding::NotApplicable(
                    "the host booted without UEFI (no /sys/firmware/efi), and secure boot is a UEFI facility".into(),
                ));
            }
            // A capture that did not look at a variable cannot vouch for its absence.
            if let Some(path) = efi::capture_paths().into_iter().find(|p| !fs.covers(p)) {
                return Ok(Finding::Inconclusive(format!(
                    "the capture did not cover {path} (it was taken by an older hilt), so whether signatures are \
                     enforced cannot be told from it; capture the host again"
                )));
            }
            let mut readings = Vec::new();
            for variable in efi::VARIABLES {
                readings.extend(variable.read(&fs).map_err(hostread::unreadable)?);
            }
            secure_boot_verdict(ctx, &fs, &readings)
        })
    },
};

/// The verdict of `platform.secure_boot` from the variables as read.
///
/// A well-formed reading that turns enforcement off fails the check whatever else was
/// read; a reading hilt cannot judge (malformed, or a firmware variable holding a value
/// the UEFI specification does not define) makes it inconclusive only when nothing
/// else fails it, and never passes it.
fn secure_boot_verdict(ctx: &mut CheckCtx<'_>, fs: &HostFs, readings: &[efi::Reading]) -> Result<Finding, Finding> {
    let mut unclear = Vec::new();
    let mut noted = Vec::new();
    for r in readings {
        let key = format!(
            "{}{}",
            r.variable.name,
            match r.interface {
                efi::Interface::Efivarfs => "",
                efi::Interface::SysfsVars => " (sysfs efivars)",
                efi::Interface::MokVarTable => " (MOK table)",
            }
        );
        // DeployedMode and MokIgnoreDB are evidence: no value of theirs turns enforcement
        // off, so one that cannot be read is noted and decides nothing.
        let deciding = ![efi::DEPLOYED_MODE, efi::MOK_IGNORE_DB].contains(&r.variable);
        let unclear = if deciding { &mut unclear } else { &mut noted };
        match (&r.malformed, r.byte()) {
            (None, Some(byte)) => ctx.evidence(&key, byte),
            (why, _) => {
                ctx.evidence(&key, format!("{} bytes", r.value.len()));
                unclear.push(why.clone().unwrap_or_default());
            }
        }
        // The firmware's mode variables are booleans: 0 or 1 (UEFI 2.10 section 3.3). shim
        // takes any non-zero MokSBStateRT as insecure mode, and validates images only while
        // SecureBoot reads exactly 1 (shim.c, `secure_mode`), so those two have no such
        // range: any other value of theirs decides.
        let boolean = [efi::SETUP_MODE, efi::AUDIT_MODE, efi::DEPLOYED_MODE].contains(&r.variable);
        if let Some(byte) = r.byte().filter(|b| boolean && *b > 1) {
            unclear.push(format!(
                "{} = {byte} in {}, a value the UEFI specification does not define (it defines 0 and 1)",
                r.variable.name, r.path
            ));
        }
    }
    // Only the readings whose value means something by the rules above decide.
    let of = |v: efi::Variable| {
        let boolean = [efi::SETUP_MODE, efi::AUDIT_MODE, efi::DEPLOYED_MODE].contains(&v);
        readings
            .iter()
            .filter(move |r| r.variable == v && r.byte().is_some_and(|b| !boolean || b <= 1))
    };
    let at = |r: &efi::Reading| format!("{} = {} in {}", r.variable.name, r.value[0], r.path);
    let secure_boot_on = of(efi::SECURE_BOOT).next().is_some() && of(efi::SECURE_BOOT).all(|r| r.value[0] == 1);
    let mut problems = Vec::new();
    for r in of(efi::SECURE_BOOT).filter(|r| r.value[0] != 1) {
        problems.push(match r.value[0] {
            0 => format!("secure boot is disabled ({})", at(r)),
            _ => format!(
                "secure boot is not on ({}, a value the UEFI specification does not define; shim validates images \
                 only while SecureBoot reads 1)",
                at(r)
            ),
        });
    }
    for r in of(efi::SETUP_MODE).filter(|r| r.value[0] != 0) {
        problems.push(format!(
            "the firmware is in setup mode ({}): no platform key is enrolled, so it verifies no signature and \
             its secure boot keys can be replaced without authentication",
            at(r)
        ));
    }
    for r in of(efi::AUDIT_MODE).filter(|r| r.value[0] != 0) {
        problems.push(format!(
            "the firmware is in audit mode ({}): it only logs images whose signatures fail and runs them anyway",
            at(r)
        ));
    }
    for r in of(efi::MOK_SB_STATE).filter(|r| r.value[0] != 0) {
        if r.non_volatile() {
            ctx.evidence(
                "MokSBStateRT_ignored",
                format!(
                    "{} is non-volatile, so shim did not set it at this boot (shim's copy is volatile); the kernel \
                     ignores it too",
                    r.path
                ),
            );
            continue;
        }
        problems.push(format!(
            "shim has been told not to validate images ({}): any boot loader, kernel or module is accepted{}",
            at(r),
            if secure_boot_on {
                " although the firmware's SecureBoot reads 1"
            } else {
                ""
            }
        ));
    }
    if !noted.is_empty() {
        ctx.evidence("unclear_evidence", noted.join("; "));
    }
    if !problems.is_empty() {
        if !unclear.is_empty() {
            ctx.evidence("unclear", unclear.join("; "));
        }
        return Ok(Finding::Fail(problems.join("; ")));
    }
    if !unclear.is_empty() {
        return Ok(Finding::Inconclusive(unclear.join("; ")));
    }
    if readings.iter().all(|r| r.variable != efi::SECURE_BOOT) {
        let interfaces = efi::interfaces(fs).map_err(hostread::unreadable)?;
        if interfaces.is_empty() {
            return Ok(Finding::Inconclusive(format!(
                "efivarfs is not mounted at {}, and the kernel offers no other view of the UEFI variables (no \
                 {}, no {}), so the secure boot state cannot be read (mount -t efivarfs efivarfs {})",
                efi::EFIVARFS,
                efi::SYSFS_VARS,
                efi::MOKVAR,
                efi::EFIVARFS
            )));
        }
        if !interfaces.iter().any(|i| i.shows_every_variable()) {
            return Ok(Finding::Inconclusive(format!(
                "efivarfs is not mounted at {} and {} lists no variables; {} holds only the variables shim copied \
                 there, and SecureBoot is not among them, so whether the firmware enforces signatures cannot be \
                 read (mount -t efivarfs efivarfs {})",
                efi::EFIVARFS,
                efi::SYSFS_VARS,
                efi::MOKVAR,
                efi::EFIVARFS
            )));
        }
        return Ok(Finding::Fail(
            "the firmware has no SecureBoot variable: it does not support secure boot".into(),
        ));
    }
    Ok(Finding::Pass)
}

/// `platform.kernel_lockdown`.
pub static KERNEL_LOCKDOWN: CheckDef = CheckDef {
    id: "platform.kernel_lockdown",
    title: "The kernel runs in lockdown mode",
    description: "Reads the active mode (the bracketed word) of /sys/kernel/security/lockdown. \
        `integrity` keeps even root from modifying the running kernel (unsigned modules, \
        /dev/mem, kexec of unsigned kernels); `confidentiality` also keeps root from reading \
        kernel memory. The least acceptable mode is a parameter. Inconclusive when \
        securityfs is not mounted, so the mode cannot be read.",
    remediation: "Boot with `lockdown=integrity` (or `confidentiality`) on the kernel command \
        line; distribution kernels also enter lockdown automatically under secure boot.",
    requirements: &["IP-1", "IP-6"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["lockdown-none"],
    params: ParamsSpec::of::<LockdownParams>(),
    run: |ctx| {
        hostread::run::<LockdownParams>(ctx, |ctx, params| {
            let fs = ctx.host().clone();
            let mode = match lockdown_mode(&fs)? {
                Lockdown::NotMounted => {
                    return Ok(Finding::Inconclusive(
                        "securityfs is not mounted at /sys/kernel/security, so the lockdown mode cannot be read \
                         (mount -t securityfs securityfs /sys/kernel/security)"
                            .into(),
                    ));
                }
                Lockdown::Absent => {
                    return Ok(Finding::Fail(
                        "the kernel has no lockdown support (securityfs is mounted but has no lockdown file)".into(),
                    ));
                }
                Lockdown::Mode(m) => m,
            };
            ctx.evidence("lockdown", mode.clone());
            let rank = |m: &str| ["none", "integrity", "confidentiality"].iter().position(|x| *x == m);
            let (Some(have), Some(need)) = (rank(&mode), rank(params.minimum.as_str())) else {
                return Ok(Finding::Inconclusive(format!("unknown lockdown mode `{mode}`")));
            };
            Ok(if have >= need {
                Finding::Pass
            } else {
                Finding::Fail(format!(
                    "kernel lockdown is `{mode}`, below the required `{}`",
                    params.minimum.as_str()
                ))
            })
        })
    },
};

/// `platform.module_signatures`.
pub static MODULE_SIGNATURES: CheckDef = CheckDef {
    id: "platform.module_signatures",
    title: "The kernel loads only signed modules",
    description: "Module signatures are enforced when /sys/module/module/parameters/sig_enforce \
        is Y or the kernel is in lockdown (integrity or confidentiality). Fails when neither \
        holds, or when the taint flags in /proc/sys/kernel/tainted show that an unsigned \
        module was loaded (bit 13; bit 12, an out-of-tree module such as the GPU driver, is \
        recorded but allowed). Not applicable on a kernel that cannot load modules.",
    remediation: "Boot with `module.sig_enforce=1` or in lockdown, sign out-of-tree modules \
        (the GPU driver through DKMS with an enrolled MOK key), and reboot to clear the taint \
        of an unsigned module already loaded.",
    requirements: &["IP-1"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["unsigned-modules"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            if !fs.exists("/proc/modules") {
                return Ok(Finding::NotApplicable(
                    "this kernel cannot load modules (no /proc/modules), so there are no module signatures to enforce"
                        .into(),
                ));
            }
            if let Some(text) = optional(fs.read_trimmed("/proc/sys/kernel/tainted"))? {
                // As the kernel's `%lu` writes it: `+0` or `00` was edited in.
                let taint: u64 = hilt_harness::hostfs::kernel_decimal(&text)
                    .ok_or_else(|| Finding::Error(format!("/proc/sys/kernel/tainted holds `{text}`, not a number")))?;
                ctx.evidence("tainted", taint);
                if taint & (1 << 13) != 0 {
                    return Ok(Finding::Fail(format!(
                        "an unsigned module has been loaded since boot (taint flag 13 is set: tainted = {taint})"
                    )));
                }
            }
            let enforce = optional(fs.read_trimmed("/sys/module/module/parameters/sig_enforce"))?;
            if let Some(e) = &enforce {
                ctx.evidence("sig_enforce", e.clone());
            }
            if enforce.as_deref() == Some("Y") {
                return Ok(Finding::Pass);
            }
            let lockdown = lockdown_mode(&fs)?;
            if let Lockdown::Mode(m) = &lockdown {
                ctx.evidence("lockdown", m.clone());
                if m != "none" {
                    return Ok(Finding::Pass);
                }
            }
            let why = match enforce {
                Some(v) => format!("sig_enforce is {v}"),
                None => "the kernel has no module signature support (no sig_enforce parameter)".into(),
            };
            Ok(match lockdown {
                Lockdown::NotMounted => Finding::Inconclusive(format!(
                    "{why}, and the lockdown mode, which may enforce signatures anyway, cannot be read (securityfs \
                     is not mounted)"
                )),
                _ => Finding::Fail(format!(
                    "the kernel loads unsigned modules: {why} and the kernel is not in lockdown"
                )),
            })
        })
    },
};

/// `platform.tpm`.
pub static TPM: CheckDef = CheckDef {
    id: "platform.tpm",
    title: "The host has a TPM 2.0",
    description: "Looks for a TPM in /sys/class/tpm and reads its `tpm_version_major`: a TPM \
        2.0 is the root of trust that measures the boot and seals keys to it. Fails when \
        there is none or only a TPM 1.2.",
    remediation: "Enable the TPM (often called PTT or fTPM) in the firmware setup, or fit a \
        discrete TPM 2.0; for a virtual machine, give it a virtual TPM.",
    requirements: &["IP-3", "SC-1"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["no-tpm"],
    params: ParamsSpec::of::<NoParams>(),
    run: |ctx| {
        hostread::run::<NoParams>(ctx, |ctx, _| {
            let fs = ctx.host().clone();
            let tpms: Vec<String> = fs
                .list_or_empty("/sys/class/tpm")
                .map_err(hostread::unreadable)?
                .into_iter()
                .filter(|n| n.starts_with("tpm") && !n.starts_with("tpmrm"))
                .collect();
            if tpms.is_empty() {
                return Ok(Finding::Fail(
                    "no TPM: /sys/class/tpm lists none, so the platform cannot measure its boot or seal keys".into(),
                ));
            }
            let mut versions = Vec::new();
            for tpm in &tpms {
                let v = optional(fs.read_trimmed(&format!("/sys/class/tpm/{tpm}/tpm_version_major")))?;
                versions.push(format!("{tpm}: {}", v.as_deref().unwrap_or("unknown")));
                if v.as_deref() == Some("2") {
                    ctx.evidence("tpms", versions.clone());
                    return Ok(Finding::Pass);
                }
            }
            ctx.evidence("tpms", versions.clone());
            Ok(if versions.iter().all(|v| v.ends_with(": 1")) {
                Finding::Fail(format!("only TPM 1.2 is present ({})", versions.join(", ")))
            } else {
                Finding::Inconclusive(format!(
                    "the TPM version cannot be read ({}); kernels before 5.6 do not report it",
                    versions.join(", ")
                ))
            })
        })
    },
};

/// `platform.remote_root_login`.
pub static REMOTE_ROOT_LOGIN: CheckDef = CheckDef {
    id: "platform.remote_root_login",
    title: "The remote login service refuses root",
    description: "Checks OpenSSH, the remote login service whose configuration hilt can \
        read (telnet, rsh and vendor consoles are not covered). Works out the SSH server's \
        effective `PermitRootLogin` from /etc/ssh/sshd_config and the files its `Include` \
        lines name, as sshd does: the first value given wins, values may be quoted, and \
        without one the default is `prohibit-password` (since OpenSSH 7.0), which still \
        lets root in with a key. Any `Match` block that permits root login fails too, since \
        hilt cannot tell which connections it matches. Whether root by key is acceptable is \
        a parameter; by default only `no` passes. Not applicable where there is no OpenSSH \
        server; inconclusive where there is an sshd binary but no configuration to read, or \
        a replayed capture lacks an included file.",
    remediation: "Set `PermitRootLogin no` at the top of /etc/ssh/sshd_config (before any \
        Include whose files set it otherwise) and in no Match block, log in as a named user \
        and escalate with sudo, then reload sshd.",
    requirements: &["AC-2"],
    faults: &[],
    concurrent: true,
    scope: Scope::Host,
    host_faults: &["root-login-yes", "root-login-key", "root-login-quoted"],
    params: ParamsSpec::of::<SshdParams>(),
    run: |ctx| {
        hostread::run::<SshdParams>(ctx, |ctx, params| {
            let fs = ctx.host().clone();
            let has_server = ["/usr/sbin/sshd", "/usr/bin/sshd"].iter().any(|p| fs.exists(p));
            let config = match optional(fs.read_text(SSHD_CONFIG))? {
                Some(text) => text,
                None if has_server => {
                    return Ok(Finding::Inconclusive(format!(
                        "an sshd binary is installed but {SSHD_CONFIG} does not exist, so its effective \
                         PermitRootLogin cannot be established (sshd refuses to start without it, or the \
                         distribution keeps it elsewhere)"
                    )));
                }
                None => {
                    return Ok(Finding::NotApplicable(
                        "no OpenSSH server here: neither /etc/ssh/sshd_config nor an sshd binary exists".into(),
                    ));
                }
            };
            let parsed = SshdConfig::parse(&fs, &config)?;
            let (value, origin) = match &parsed.permit_root_login {
                Some((v, o)) => (v.clone(), o.clone()),
                None => ("prohibit-password".into(), "the default since OpenSSH 7.0".into()),
            };
            ctx.evidence("permit_root_login", value.clone());
            ctx.evidence("set_by", origin.clone());
            ctx.evidence("files_read", parsed.files.clone());
            let mut problems = Vec::new();
            if let Some(p) = judge_root_login(&value, params.allow_root_by_key) {
                problems.push(format!("PermitRootLogin is `{value}` ({origin}): {p}"));
            }
            for (criteria, v, o) in &parsed.match_values {
                if let Some(p) = judge_root_login(v, params.allow_root_by_key) {
                    problems.push(format!("`Match {criteria}` sets PermitRootLogin `{v}` ({o}): {p}"));
                }
            }
            Ok(if problems.is_empty() {
                Finding::Pass
            } else {
                Finding::Fail(problems.join("; "))
            })
        })
    },
};

/// Parameters of `platform.kernel_lockdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LockdownParams {
    /// The least acceptable lockdown mode: `integrity` or `confidentiality`.
    pub minimum: LockdownMode,
}

impl CheckParams for LockdownParams {}

/// A lockdown mode a profile can require.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockdownMode {
    /// The running kernel cannot be modified, even by root.
    #[default]
    Integrity,
    /// Also, kernel memory cannot be read.
    Confidentiality,
}

impl LockdownMode {
    fn as_str(self) -> &'static str {
        match self {
            LockdownMode::Integrity => "integrity",
            LockdownMode::Confidentiality => "confidentiality",
        }
    }
}

/// Parameters of `platform.remote_root_login`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SshdParams {
    /// Accept root login with a key (`prohibit-password`, `forced-commands-only`); by
    /// default only `no` passes.
    pub allow_root_by_key: bool,
}

impl CheckParams for SshdParams {}

use hilt_harness::sshd::SSHD_CONFIG;

/// What the lockdown file says.
enum Lockdown {
    NotMounted,
    Absent,
    Mode(String),
}

fn lockdown_mode(fs: &HostFs) -> Result<Lockdown, Finding> {
    match optional(fs.read_trimmed("/sys/kernel/security/lockdown"))? {
        Some(text) => {
            let mode = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
                .ok_or_else(|| {
                    Finding::Error(format!("/sys/kernel/security/lockdown has no bracketed mode: `{text}`"))
                })?;
            Ok(Lockdown::Mode(mode.to_string()))
        }
        None => {
            let mounted = fs.mounted("/sys/kernel/security").map_err(hostread::unreadable)?;
            Ok(if mounted {
                Lockdown::Absent
            } else {
                Lockdown::NotMounted
            })
        }
    }
}

/// Why a `PermitRootLogin` value lets root in, or `None` when it does not.
fn judge_root_login(value: &str, allow_by_key: bool) -> Option<String> {
    match value.to_ascii_lowercase().as_str() {
        "no" => None,
        "prohibit-password" | "without-password" | "forced-commands-only" if allow_by_key => None,
        "prohibit-password" | "without-password" => Some("root can log in remotely with a key".into()),
        "forced-commands-only" => Some("root can log in remotely with a key to run its forced command".into()),
        "yes" => Some("root can log in remotely, with a password too".into()),
        other => Some(format!(
            "unknown value `{other}`, which sshd would refuse to start with"
        )),
    }
}

/// The parts of an sshd configuration the check needs.
#[derive(Debug, Default, PartialEq)]
pub struct SshdConfig {
    /// The first global `PermitRootLogin` and where it was set (`file:line`).
    pub permit_root_login: Option<(String, String)>,
    /// Each `PermitRootLogin` inside a `Match` block: criteria, value, where.
    pub match_values: Vec<(String, String, String)>,
    /// Every file read, the main one first.
    pub files: Vec<String>,
}

impl SshdConfig {
    /// Parses `main` (the text of /etc/ssh/sshd_config) and the files its `Include`
    /// lines name, read through `fs`.
    pub fn parse(fs: &HostFs, main: &str) -> Result<SshdConfig, Finding> {
        let mut config = SshdConfig::default();
        config.walk(fs, SSHD_CONFIG, main, None, 0)?;
        Ok(config)
    }

    fn walk(&mut self, fs: &HostFs, file: &str, text: &str, outer: Option<&str>, depth: u32) -> Result<(), Finding> {
        if depth > sshd::MAX_INCLUDE_DEPTH {
            return Err(Finding::Error(format!(
                "sshd Include nesting deeper than {} at {file}",
                sshd::MAX_INCLUDE_DEPTH
            )));
        }
        self.files.push(file.to_string());
        // A Match block lasts to the next Match or the end of its file; one that an
        // Include sits in covers the included lines.
        let mut block: Option<String> = outer.map(str::to_string);
        for (n, raw) in text.lines().enumerate() {
            let Some((key, args)) = sshd::parse_line(raw) else {
                continue;
            };
            let at = format!("{file}:{}", n + 1);
            match key.as_str() {
                "match" => {
                    let criteria = args.join(" ");
                    block = if criteria.eq_ignore_ascii_case("all") {
                        None
                    } else {
                        Some(criteria)
                    }
                }
                "include" => {
                    for arg in &args {
                        let pattern = sshd::include_pattern(arg);
                        if !fs.covers(&pattern) {
                            return Err(Finding::Inconclusive(format!(
                                "{at} includes `{pattern}`, which the capture being replayed did not cover, so \
                                 the settings it holds are unknown"
                            )));
                        }
                        let files = hilt_harness::hostfs::expand(fs, &pattern).map_err(hostread::unreadable)?;
                        for included in files {
                            if let Some(text) = optional(fs.read_text(&included))? {
                                self.walk(fs, &included, &text, block.as_deref(), depth + 1)?;
                            }
                        }
                    }
                }
                "permitrootlogin" => {
                    let v = args.first().cloned().unwrap_or_default();
                    match &block {
                        Some(criteria) => self.match_values.push((criteria.clone(), v, at)),
                        None if self.permit_root_login.is_none() => self.permit_root_login = Some((v, at)),
                        None => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(files: &[(&str, &str)]) -> (tempfile::TempDir, HostFs) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, body) in files {
            let p = dir.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        let fs = HostFs::at(dir.path()).expect("root");
        (dir, fs)
    }

    #[test]
    fn the_first_value_wins_across_includes_as_in_sshd() {
        let (_d, fs) = root(&[
            (
                "/etc/ssh/sshd_config.d/10-cloud.conf",
                "PermitRootLogin prohibit-password\n",
            ),
            ("/etc/ssh/sshd_config.d/20-late.conf", "PermitRootLogin yes\n"),
        ]);
        let main = "# comment\nInclude sshd_config.d/*.conf\nPermitRootLogin no\n";
        let c = SshdConfig::parse(&fs, main).expect("parse");
        assert_eq!(
            c.permit_root_login,
            Some((
                "prohibit-password".into(),
                "/etc/ssh/sshd_config.d/10-cloud.conf:1".into()
            ))
        );
        assert_eq!(c.files.len(), 3);
    }

    #[test]
    fn match_blocks_are_kept_apart_and_equals_signs_accepted() {
        let (_d, fs) = root(&[]);
        let main =
            "PermitRootLogin=no\nMatch Address 10.0.0.0/8\n  PermitRootLogin yes\nMatch all\nPermitRootLogin yes\n";
        let c = SshdConfig::parse(&fs, main).expect("parse");
        assert_eq!(c.permit_root_login.map(|p| p.0), Some("no".into()));
        assert_eq!(c.match_values.len(), 1);
        assert_eq!(c.match_values[0].0, "Address 10.0.0.0/8");
    }

    #[test]
    fn quoted_values_parse_as_sshd_reads_them() {
        let (_d, fs) = root(&[]);
        let c = SshdConfig::parse(&fs, "PermitRootLogin \"yes\"\n").expect("parse");
        assert_eq!(c.permit_root_login.map(|p| p.0), Some("yes".into()));
    }

    #[test]
    fn root_by_key_is_a_failure_unless_allowed() {
        assert!(judge_root_login("prohibit-password", false).is_some());
        assert!(judge_root_login("prohibit-password", true).is_none());
        assert!(judge_root_login("yes", true).is_some());
        assert!(judge_root_login("No", false).is_none());
    }
}
