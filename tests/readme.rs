//! Every ```toml block of README.md goes through the configuration loader as `tollgate check`
//! does, so an example a user copies is one tollgate accepts.
//!
//! Blocks are checked as written, with two completions for the many blocks that show one
//! feature:
//! - a block with no `[[issuer]]` gets one, named `idp` (`https://idp.example.com`, audience
//!   `api`), so bearer routes and clients naming `issuer = "idp"` have theirs;
//! - a block with no `[[route]]` gets a public one (`path = "/"`, `auth = "none"`).
//!
//! Any table a block does write (a `[login]`, a `[[route]]`, an `[[issuer]]`) must be complete.
//! Every `*_file` a block names is created in a temporary directory (a secret, a CA, a
//! certificate or a key, by the key's name) and the path rewritten to it; `${VAR}`s come from
//! [`ENV`]. A failure names the README line of the block.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tollgate::config::Config;
use toml::Value;

/// The environment README's examples are checked with: what a user would export.
const ENV: &[(&str, &str)] =
    &[("REDIS_PASSWORD", "redis-password"), ("DPOP_NONCE_SECRET", "0123456789abcdef0123456789abcdef-dpop")];

/// A ```toml block: the README line of its first line, and its text.
struct Block {
    line: usize,
    text: String,
}

fn toml_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        let fence = line.trim_start();
        match &mut open {
            None if fence.starts_with("```toml") => open = Some(Block { line: i + 2, text: String::new() }),
            None => {}
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some(b) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "README.md: a ```toml block is not closed");
    blocks
}

/// PEM files for the blocks' `*_file` keys: a CA, a certificate it issued, and its key.
struct Pems {
    ca: String,
    cert: String,
    key: String,
}

fn pems() -> Pems {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "readme CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    Pems { ca: ca.pem(), cert: leaf.pem(), key: key.serialize_pem() }
}

/// What a file named by `key` holds.
fn file_contents(key: &str, pems: &Pems) -> String {
    match key {
        "cookie_secret_file" => "readme-cookie-secret-0123456789abcdef0123456789".into(),
        "nonce_secret_file" => "readme-nonce-secret-0123456789abcdef0123456789".into(),
        "redis_url_file" => "redis://127.0.0.1:6379".into(),
        k if k.ends_with("secret_file") => "readme-client-secret".into(),
        k if k.ends_with("ca_file") => pems.ca.clone(),
        k if k.ends_with("key_file") => pems.key.clone(),
        k if k.ends_with("cert_file") => pems.cert.clone(),
        k => panic!("tests/readme.rs does not know what a `{k}` holds; add it to file_contents"),
    }
}

/// Points every `*_file` string in `v` at a file made in `dir` (the same README path, the same file).
fn make_files(v: &mut Value, dir: &Path, pems: &Pems, made: &mut BTreeMap<String, PathBuf>) {
    match v {
        Value::Table(t) => {
            for (key, item) in t.iter_mut() {
                match item {
                    Value::String(path) if key.ends_with("_file") => {
                        let n = made.len();
                        let local = made
                            .entry(path.clone())
                            .or_insert_with(|| {
                                let name =
                                    Path::new(path.as_str()).file_name().map(|f| f.to_string_lossy().into_owned());
                                let local = dir.join(format!("{n}-{}", name.unwrap_or_default()));
                                std::fs::write(&local, file_contents(key, pems)).unwrap();
                                local
                            })
                            .clone();
                        *path = local.to_string_lossy().into_owned();
                    }
                    other => make_files(other, dir, pems, made),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| make_files(i, dir, pems, made)),
        _ => {}
    }
}

/// The two completions described at the top.
fn complete(v: &mut Value) {
    let t = v.as_table_mut().unwrap();
    if !t.contains_key("issuer") {
        let issuer: Value =
            toml::from_str("name = \"idp\"\nurl = \"https://idp.example.com\"\naudiences = [\"api\"]\n").unwrap();
        t.insert("issuer".into(), Value::Array(vec![issuer]));
    }
    if !t.contains_key("route") {
        let route: Value =
            toml::from_str("path = \"/\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:3000\"\n").unwrap();
        t.insert("route".into(), Value::Array(vec![route]));
    }
}

/// Checks one block; the error says what `tollgate check` would print.
fn check(block: &Block, dir: &Path, pems: &Pems) -> Result<(), String> {
    let mut v: Value = toml::from_str(&block.text).map_err(|e| format!("not TOML: {e}"))?;
    complete(&mut v);
    make_files(&mut v, dir, pems, &mut BTreeMap::new());
    let text = toml::to_string(&v).unwrap();
    let file = dir.join("tollgate.toml");
    std::fs::write(&file, &text).unwrap();
    let env = |name: &str| ENV.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    Config::from_str(&text, &file, &env).map(|_| ()).map_err(|e| format!("{e}\n--- as checked:\n{text}"))
}

#[test]
fn every_toml_block_in_the_readme_passes_tollgate_check() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks = toml_blocks(&readme);
    assert!(blocks.len() >= 10, "found only {} ```toml blocks", blocks.len());
    let pems = pems();
    let mut failures = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let dir = std::env::temp_dir().join(format!("tollgate-readme-{}-{i}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let result = check(block, &dir, &pems);
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = result {
            failures.push(format!("README.md:{}: this ```toml block fails `tollgate check`:\n{e}", block.line));
        }
    }
    assert!(failures.is_empty(), "{} of {} blocks fail:\n\n{}", failures.len(), blocks.len(), failures.join("\n\n"));
}

#[test]
fn blocks_are_found_with_their_lines() {
    let blocks = toml_blocks("a\n```toml\nx = 1\n```\n\n```sh\nno\n```\n```toml\ny = 2\nz = 3\n```\n");
    let found: Vec<(usize, &str)> = blocks.iter().map(|b| (b.line, b.text.as_str())).collect();
    assert_eq!(found, vec![(3, "x = 1\n"), (10, "y = 2\nz = 3\n")]);
}
