// Built on its own (not part of the workspace) so a release build takes seconds, not the agent's
// whole dependency tree: `cargo build --release --manifest-path tests/bench/yaml-reader/Cargo.toml`.
//! The agent's YAML reader alone (agent/src/input + diag.rs), optimised: read one file as
//! `validate` reads a compose file (limits, interpolation, line index), print the diagnostics.
#[path = "../../../../agent/src/diag.rs"]
mod diag;
#[path = "../../../../agent/src/input/mod.rs"]
mod input;

fn main() {
    let path = std::env::args().nth(1).expect("file");
    let p = std::path::Path::new(&path);
    let mut d = diag::Diagnostics::default();
    let env = input::Env::from_pairs([("A", "1")]);
    let (dir, name) = (
        p.parent().expect("a file path"),
        p.file_name().expect("a file path"),
    );
    let out = input::read_yaml(dir, name.as_ref(), Some(&env), &mut d);
    for x in d.into_sorted() {
        eprintln!("error: {x}");
    }
    std::process::exit(if out.is_some() { 0 } else { 1 });
}
