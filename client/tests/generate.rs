//! `sumclient --generate`: completions and the man page from the clap
//! definitions, without the N that a run needs.

use std::process::Command;

/// bash (valid to `bash -n`), zsh and fish completions, and a man page
/// naming the options and their variables.
#[test]
fn completions_and_man_page() {
    let generate = |what: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_sumclient"))
            .args(["--generate", what])
            .output()
            .expect("run sumclient");
        assert!(output.status.success(), "--generate {what}: {output:?}");
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let bash = generate("bash");
    let checked = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .expect("run bash -n");
    assert!(checked.success(), "bash -n refuses the script");
    assert!(bash.contains("complete -F _sumclient"), "{bash}");
    assert!(generate("zsh").starts_with("#compdef sumclient"));
    assert!(generate("fish").contains("complete -c sumclient -l keep-alive"));
    let man = generate("man");
    assert!(man.contains(".TH sumclient 1"), "{man}");
    for option in ["keep\\-alive", "YSUM_REQUESTS"] {
        assert!(man.contains(option), "the man page names {option}: {man}");
    }
}
