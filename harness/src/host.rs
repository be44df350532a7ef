//! Facts about the host, and the civil time the record is stamped with.

use std::time::{SystemTime, UNIX_EPOCH};

use hilt_results::Host;
use serde::Serialize;

/// A calendar date (proleptic Gregorian, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Date {
    /// Year.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day, 1 to 31.
    pub day: u8,
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Date {
    /// Today, in UTC.
    pub fn today() -> Date {
        civil(SystemTime::now()).0
    }
}

/// `time` as an RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(time: SystemTime) -> String {
    let (date, secs_of_day, millis) = civil(time);
    format!(
        "{date}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

/// The date, second of the day and millisecond of `time`, in UTC.
fn civil(time: SystemTime) -> (Date, u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (Date { year, month, day }, secs % 86_400, since.subsec_millis())
}

/// Facts about this machine; `node` is left to the run (`hilt run --node`).
pub fn host_facts() -> Host {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    };
    Host {
        hostname: read("/proc/sys/kernel/hostname"),
        os: std::env::consts::OS.into(),
        kernel: read("/proc/sys/kernel/osrelease"),
        arch: std::env::consts::ARCH.into(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        node: None,
        machine: std::fs::read("/etc/machine-id")
            .ok()
            .and_then(|id| machine_identity(&id)),
    }
}

/// hilt's application identifier, the message of the machine identity's HMAC (a random
/// 128-bit value, fixed for good: changing it changes every machine's identity).
const APPLICATION_ID: [u8; 16] = [
    0x15, 0x8c, 0xec, 0xb8, 0x9a, 0xdf, 0x49, 0xc3, 0x99, 0xe6, 0x5a, 0xcc, 0x6d, 0x45, 0x3e, 0xe1,
];

/// The machine identity recorded as `host.machine` from the contents of
/// `/etc/machine-id`: the first 16 bytes of HMAC-SHA256 keyed by the machine ID over
/// [`APPLICATION_ID`], in hex, in the manner of systemd's
/// `sd_id128_get_machine_app_specific` (which also sets UUID version bits; hilt does not). None unless the file holds what machine-id(5) allows: 32
/// lower-case hex digits and a newline; `uninitialized` (a first boot not yet committed)
/// and an all-zero ID are not identities.
pub fn machine_identity(file: &[u8]) -> Option<String> {
    use hmac::{KeyInit, Mac};
    let text = std::str::from_utf8(file).ok()?;
    let id = text.strip_suffix('\n').unwrap_or(text);
    if id.len() != 32 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let key: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    if key.iter().all(|b| *b == 0) {
        return None;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(&APPLICATION_ID);
    let digest = mac.finalize().into_bytes();
    Some(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_machine_identity_follows_machine_id_5_and_hides_the_id() {
        let id = "3d1219c7c4c5404aaa1f6d2a48adfda4";
        let known = machine_identity(format!("{id}\n").as_bytes()).expect("a valid machine ID");
        assert_eq!(known.len(), 32);
        assert!(hilt_results::is_machine_identity(&known));
        assert!(!known.contains(id) && known != id);
        // The same machine, with or without the trailing newline; another, another.
        assert_eq!(machine_identity(id.as_bytes()).as_deref(), Some(known.as_str()));
        let other = machine_identity(b"3d1219c7c4c5404aaa1f6d2a48adfda5\n").expect("valid");
        assert_ne!(other, known);
        // HMAC-SHA256 keyed by the ID's 16 bytes over hilt's application ID, first half;
        // the reference value from Python's hmac module.
        assert_eq!(known, "09cb411738c66d93f1c8d5c64fe1a199");
        for bad in [
            &b""[..],
            b"\n",
            b"uninitialized\n",
            b"00000000000000000000000000000000\n",
            b"3D1219C7C4C5404AAA1F6D2A48ADFDA4\n",
            b"3d1219c7c4c5404aaa1f6d2a48adfda\n",
            b"3d1219c7c4c5404aaa1f6d2a48adfda44\n",
            b"3d1219c7-c4c5-404a-aa1f-6d2a48adfda4\n",
            b"3d1219c7c4c5404aaa1f6d2a48adfda4\n\n",
            b" 3d1219c7c4c5404aaa1f6d2a48adfda4\n",
            b"\xff\xfe",
        ] {
            assert_eq!(machine_identity(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn civil_dates_are_right_around_known_days() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_795_694_400_123), "2026-11-26T12:00:00.123Z");
    }
}
