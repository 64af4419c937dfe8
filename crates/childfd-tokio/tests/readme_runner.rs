//! The README shows the example test runner whole; the copy there must be
//! the program that `cargo test` compiles and `example_runner` runs, or a
//! reader would copy code nobody builds.

use std::path::Path;

#[test]
fn the_readme_shows_the_runner_example_as_it_is_built() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/runner.rs")).unwrap();
    let block = format!("```rs\n{example}```\n");
    assert!(
        readme.contains(&block),
        "README.md's copy of examples/runner.rs differs from the file: paste the file \
         between the ```rs fences of the runner section again"
    );
}
