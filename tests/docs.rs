//! The documentation tells the truth: the README's configuration reference, `config.example.toml` and the
//! program agree on every key and every default, and the README opens with the two commands.

use std::collections::{BTreeMap, BTreeSet};

use hub2mqtt::config::{Config, EwelinkConfig, IkuaiConfig};

const SECTIONS: [&str; 4] = ["mqtt", "bridge", "ikuai", "ewelink"];

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// The keys the program accepts in a section, from its own "expected one of" refusal of an unknown key.
fn program_keys(section: &str) -> BTreeSet<String> {
    let text = match section {
        "ikuai" | "ewelink" => format!("[[{section}]]\nzz_unknown = 1\n"),
        _ => format!("[{section}]\nzz_unknown = 1\n"),
    };
    let err = Config::parse(&text, "probe.toml", std::iter::empty()).unwrap_err();
    // serde says "expected `a`" for one field and "expected one of `a`, `b`" for several.
    let list = err.message.split("expected").nth(1).unwrap_or_else(|| panic!("{err}"));
    let list = list.trim_start().strip_prefix("one of").unwrap_or(list);
    list.split(',').map(|k| k.trim().trim_matches('`').to_owned()).filter(|k| !k.is_empty()).collect()
}

/// The program's defaults of a section, as TOML values (keys without a default are absent).
fn program_defaults(section: &str) -> toml::Table {
    let text = match section {
        "mqtt" => toml::to_string(&Config::default().mqtt),
        "bridge" => toml::to_string(&Config::default().bridge),
        "ikuai" => toml::to_string(&IkuaiConfig::default()),
        _ => toml::to_string(&EwelinkConfig::default()),
    };
    toml::from_str(&text.unwrap()).unwrap()
}

/// `key → default cell` of the README table under the heading naming `[section]` / `[[section]]`.
fn readme_table(readme: &str, section: &str) -> BTreeMap<String, String> {
    let heading = readme
        .lines()
        .position(|l| {
            l.starts_with("### ") && (l.contains(&format!("`[{section}]`")) || l.contains(&format!("`[[{section}]]`")))
        })
        .unwrap_or_else(|| panic!("README has no configuration table heading for [{section}]"));
    let mut rows = BTreeMap::new();
    for line in readme.lines().skip(heading + 1) {
        if line.starts_with("## ") || line.starts_with("### ") {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        rows.insert(cells[1].trim_matches('`').to_owned(), cells[2].to_owned());
    }
    rows
}

/// `key → value text` of the lines (commented or not) under `[section]` / `[[section]]` in the example.
fn example_keys(example: &str, section: &str) -> BTreeMap<String, String> {
    let mut current = None;
    let mut keys = BTreeMap::new();
    for line in example.lines() {
        let bare = line.trim_start_matches('#').trim();
        if bare.starts_with('[') && bare.ends_with(']') {
            current = Some(bare.trim_matches(['[', ']']).to_owned());
            continue;
        }
        if current.as_deref() != Some(section) {
            continue;
        }
        let Some((key, rest)) = bare.split_once(" = ") else { continue };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            let value = rest.split("  #").next().unwrap_or(rest).trim();
            keys.insert(key.to_owned(), value.to_owned());
        }
    }
    keys
}

#[test]
fn readme_example_and_program_agree_on_keys_and_defaults() {
    let readme = repo_file("README.md");
    let example = repo_file("config.example.toml");
    for section in SECTIONS {
        let program = program_keys(section);
        let table = readme_table(&readme, section);
        let documented: BTreeSet<String> = table.keys().cloned().collect();
        assert_eq!(documented, program, "README's [{section}] table vs the keys the program accepts");

        let in_example = example_keys(&example, section);
        for key in &program {
            let via_file = key.strip_suffix("_file").is_some_and(|base| in_example.contains_key(base));
            assert!(in_example.contains_key(key) || via_file, "config.example.toml does not show [{section}] {key}");
        }
        for key in in_example.keys() {
            assert!(program.contains(key), "config.example.toml shows [{section}] {key}, which the program refuses");
        }

        let defaults = program_defaults(section);
        for (key, cell) in &table {
            if cell == "(required)" {
                continue;
            }
            let literal = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'));
            let parsed = literal.and_then(|l| toml::from_str::<toml::Table>(&format!("v = {l}")).ok());
            match (parsed.and_then(|t| t.get("v").cloned()), defaults.get(key)) {
                (Some(doc), Some(code)) => {
                    assert_eq!(&doc, code, "README's default of [{section}] {key}");
                    if let Some(shown) = in_example.get(key)
                        && !matches!(key.as_str(), "id" | "url" | "password" | "app_id" | "app_secret")
                    {
                        let shown: toml::Table = toml::from_str(&format!("v = {shown}")).unwrap();
                        assert_eq!(&shown["v"], code, "config.example.toml's value of [{section}] {key}");
                    }
                }
                (None, Some(code)) => panic!("README gives no default for [{section}] {key}; the program's is {code}"),
                (Some(doc), None) => panic!("README says [{section}] {key} defaults to {doc}; the program has none"),
                (None, None) => {}
            }
        }
    }
}

#[test]
fn readme_opens_with_the_run_and_test_commands() {
    let readme = repo_file("README.md");
    let head: Vec<&str> = readme.lines().take(6).collect();
    assert!(head.iter().any(|l| l.starts_with("cargo run -- demo")), "{head:?}");
    assert!(head.iter().any(|l| l.starts_with("cargo test")), "{head:?}");
    let ci = repo_file(".ci/run");
    assert!(ci.contains("cargo test"), ".ci/run runs the README's test command");
}
