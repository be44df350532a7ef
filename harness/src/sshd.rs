//! The OpenSSH server configuration as sshd tokenises it: what `platform.remote_root_login`
//! judges and what `hilt capture` follows (`Include`), in one place so that both read the
//! same files.

use crate::hostfs::{HostError, HostErrorKind, HostFs};

/// The server's main configuration file.
pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";

/// How deep `Include` may nest (sshd's own limit is 16).
pub const MAX_INCLUDE_DEPTH: u32 = 16;

/// One configuration line: its keyword, lower-cased, and its arguments with quotes
/// removed; `None` for blank lines and comments. As in sshd, the keyword may be followed
/// by `=`, arguments may be double-quoted, and an unquoted word starting with `#` begins
/// a comment.
pub fn parse_line(line: &str) -> Option<(String, Vec<String>)> {
    let mut words = split_words(line);
    if words.is_empty() {
        return None;
    }
    let first = words.remove(0);
    let (key, rest) = match first.split_once('=') {
        Some((k, v)) => (k.to_string(), (!v.is_empty()).then(|| v.to_string())),
        None => (first, None),
    };
    let mut args: Vec<String> = rest.into_iter().collect();
    if args.is_empty()
        && let Some(w) = words.first_mut()
        && let Some(stripped) = w.strip_prefix('=')
    {
        *w = stripped.to_string();
        if w.is_empty() {
            words.remove(0);
        }
    }
    args.extend(words);
    (!key.is_empty()).then(|| (key.to_ascii_lowercase(), args))
}

/// The host path pattern an `Include` argument names: relative ones are under /etc/ssh.
pub fn include_pattern(arg: &str) -> String {
    if arg.starts_with('/') {
        arg.to_string()
    } else {
        format!("/etc/ssh/{arg}")
    }
}

/// Every `Include` pattern and file reachable from the main configuration, following
/// includes as sshd does; a file or directory that cannot be read is recorded and the
/// walk goes on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct IncludeClosure {
    /// The `Include` patterns, in the order met.
    pub patterns: Vec<String>,
    /// The files read, the main one first.
    pub files: Vec<String>,
    /// What could not be read.
    pub errors: Vec<HostError>,
}

/// The include closure of `main` (the text of [`SSHD_CONFIG`]) under `fs`.
pub fn include_closure(fs: &HostFs, main: &str) -> IncludeClosure {
    let mut closure = IncludeClosure::default();
    walk(fs, SSHD_CONFIG, main, 0, &mut closure);
    closure
}

fn walk(fs: &HostFs, file: &str, text: &str, depth: u32, closure: &mut IncludeClosure) {
    if depth > MAX_INCLUDE_DEPTH {
        closure.errors.push(HostError::new(
            file,
            HostErrorKind::Other,
            format!("sshd Include nesting deeper than {MAX_INCLUDE_DEPTH}"),
        ));
        return;
    }
    closure.files.push(file.to_string());
    for line in text.lines() {
        let Some((key, args)) = parse_line(line) else { continue };
        if key != "include" {
            continue;
        }
        for arg in args {
            let pattern = include_pattern(&arg);
            closure.patterns.push(pattern.clone());
            let files = match crate::hostfs::expand(fs, &pattern) {
                Ok(files) => files,
                Err(e) => {
                    closure.errors.push(e);
                    continue;
                }
            };
            for included in files {
                match fs.read_text(&included) {
                    Ok(text) => walk(fs, &included, &text, depth + 1, closure),
                    Err(e) if e.kind == HostErrorKind::NotFound => {}
                    Err(e) => closure.errors.push(e),
                }
            }
        }
    }
}

/// Splits a line into words as sshd's `argv_split` does: whitespace separates, double
/// quotes group (and are removed), a backslash escapes the next quote or backslash, and
/// an unquoted word that starts with `#` ends the line.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() && !quoted {
                break;
            }
            chars.next();
            match c {
                '"' => quoted = !quoted,
                '\\' if matches!(chars.peek(), Some('"' | '\\')) => word.extend(chars.next()),
                _ => word.push(c),
            }
        }
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_sshd_splits_them() {
        let line = |l: &str| parse_line(l).map(|(k, a)| (k, a.join("|")));
        assert_eq!(
            line("PermitRootLogin \"no\""),
            Some(("permitrootlogin".into(), "no".into()))
        );
        assert_eq!(
            line("PermitRootLogin=no"),
            Some(("permitrootlogin".into(), "no".into()))
        );
        assert_eq!(
            line("  PermitRootLogin = yes # why"),
            Some(("permitrootlogin".into(), "yes".into()))
        );
        assert_eq!(
            line("Include \"/etc/ssh/a b.conf\" x.conf"),
            Some(("include".into(), "/etc/ssh/a b.conf|x.conf".into()))
        );
        assert_eq!(line("# PermitRootLogin yes"), None);
        assert_eq!(line("   "), None);
    }
}
