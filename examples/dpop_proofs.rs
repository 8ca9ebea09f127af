//! DPoP proofs made ahead of a load run (`benches/load.sh`, the DPoP mode): a proof is good for
//! one request, so the load generator cycles through a file of fresh ones.
//!
//!   dpop_proofs key FILE                          → an ES256 key in FILE (PKCS#8); prints its
//!                                                   RFC 7638 thumbprint (the token's cnf.jkt)
//!   dpop_proofs proofs FILE N METHOD HTU TOKEN    → N proofs, one a line, for that request and token

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/dpop.rs"]
mod client;

use std::io::{BufWriter, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["key", file] => {
            let key = client::ProofKey::es256();
            std::fs::write(file, key.pkcs8()).expect("write the key file");
            println!("{}", key.thumbprint());
        }
        ["proofs", file, n, method, htu, token] => {
            let key = client::ProofKey::es256_from_pkcs8(&std::fs::read(file).expect("read the key file"));
            let n: usize = n.parse().expect("N: a number");
            let mut out = BufWriter::new(std::io::stdout().lock());
            for _ in 0..n {
                writeln!(out, "{}", key.proof(method, htu, token)).expect("write a proof");
            }
        }
        _ => {
            eprintln!("usage: dpop_proofs key FILE | dpop_proofs proofs FILE N METHOD HTU TOKEN");
            std::process::exit(2);
        }
    }
}
