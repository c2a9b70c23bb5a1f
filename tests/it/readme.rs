//! The README's command lines: every `klines ...` line of its `sh` blocks parses as the
//! binary parses it (the crontab line included), so no documented form is refused. What
//! they do is tested by the subject's own tests (`--from -2h` in hardening.rs).

use std::path::Path;

use clap::Parser;

/// The words of a shell command line: single and double quotes group, nothing is expanded.
pub(crate) fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The klines command lines of the README's `sh` blocks.
pub(crate) fn readme_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        // A systemd unit's command line (the binary by its path).
        if let Some(cmd) = line.strip_prefix("ExecStart=") {
            let mut words = cmd.split_whitespace();
            if words.next().is_some_and(|bin| bin.ends_with("/klines")) {
                out.push(format!("klines {}", words.collect::<Vec<_>>().join(" ")));
            }
            continue;
        }
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            in_sh = !in_sh && lang.trim() == "sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        // The command itself: from `klines` to a comment, a redirection or the next command.
        let line = line.split(" #").next().unwrap_or_default();
        let Some(at) = line
            .match_indices("klines ")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || line[..i].ends_with(' ') || line[..i].ends_with("&& "))
        else {
            continue;
        };
        let mut cmd = &line[at..];
        for stop in [" >>", " >", " |", " &&", " 2>"] {
            if let Some(i) = cmd.find(stop) {
                cmd = &cmd[..i];
            }
        }
        out.push(cmd.trim().to_string());
    }
    out
}

#[test]
fn every_command_line_in_the_readme_parses() {
    let commands = readme_commands();
    assert!(commands.len() >= 7, "{commands:#?}");
    assert!(
        commands
            .iter()
            .any(|c| c == "klines pipeline --from -2h --log-format json"),
        "the crontab line: {commands:#?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("klines stream --load --build")),
        "the systemd unit: {commands:#?}"
    );
    for c in &commands {
        if let Err(e) = klines::cli::Cli::try_parse_from(words(c)) {
            panic!("README: `{c}` is refused:\n{e}");
        }
    }
}

#[test]
fn words_split_as_the_shell_does() {
    assert_eq!(
        words(r#"klines run --vars '{market: spot}' -s "a b" c"#),
        [
            "klines",
            "run",
            "--vars",
            "{market: spot}",
            "-s",
            "a b",
            "c"
        ]
    );
}

/// The quick start from an installed binary: `klines init` writes a project from the files
/// embedded in the binary, and `klines pipeline` in it backfills, loads and builds.
#[test]
fn init_then_pipeline_is_the_quick_start() {
    use crate::support::*;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The embedded files are the repository's own, and none is missing.
    let embedded: std::collections::BTreeMap<&str, &str> =
        klines::commands::init::FILES.iter().copied().collect();
    for dir in ["models", "macros", "seeds", "data_tests"] {
        for (rel, bytes) in files(&root.join(dir)) {
            let name = format!("{dir}/{rel}");
            assert_eq!(
                embedded.get(name.as_str()).map(|t| t.as_bytes()),
                Some(bytes.as_slice()),
                "{name} differs from what klines init writes"
            );
        }
    }

    let ex = TestExchange::start(ExchangeConfig::synthetic(ms("2024-01-03T06:30:00Z")));
    let home = tempfile::tempdir().unwrap();
    let klines = |dir: &Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_klines"))
            .current_dir(dir)
            .args(args)
            .env("KLINES_BASE_URL", &ex.url)
            .env("KLINES_ARCHIVE_URL", &ex.url)
            .env("HOME", home.path())
            .env_remove("KLINES_PROJECT_DIR")
            .env_remove("KLINES_STAGE")
            .env_remove("KLINES_STATE")
            .env_remove("KLINES_TARGET")
            .env_remove("KLINES_PROFILES_DIR")
            .output()
            .unwrap()
    };
    let out = klines(home.path(), &["init", "my-klines"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let project = home.path().join("my-klines");
    assert!(project.join("models/ohlc/TRADES_OHLC_5M.sql").is_file());
    let out = klines(&project, &["pipeline"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let conn = duckdb::Connection::open(project.join("klines.duckdb")).unwrap();
    let days: i64 = conn
        .query_row(
            "SELECT count(*) FROM main.TRADES_OHLC_1D WHERE symbol = 'ETHUSDT' AND is_complete",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        days, 6,
        "the default start is -7d from the exchange's clock: six whole days"
    );

    // Nothing is overwritten.
    let out = klines(home.path(), &["init", "my-klines"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}
