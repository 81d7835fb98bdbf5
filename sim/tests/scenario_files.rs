//! A malformed scenario gets a clear error naming the file, the line and the field.

use sim::scenario::parse;
use std::path::Path;

const GOOD: &str = r#"
design = "start-position"
expect = "passes"

[[vats]]
id = "v1"
bundle = "counter-v1"

[[blocks]]
inputs = [{ type = "send", target = "v1", method = "bump", args = ["1"] }]

[[crash]]
at = "point-a"
block = 2
nth = 1
"#;

fn error(text: &str) -> String {
    parse(Path::new("scenarios/broken.toml"), text).expect_err("must not parse")
}

#[test]
fn the_good_one_parses_and_round_trips() {
    let scenario = parse(Path::new("scenarios/good.toml"), GOOD).unwrap();
    assert_eq!(scenario.name, "good");
    assert_eq!(scenario.events(), 3);
    let again = parse(Path::new("scenarios/good.toml"), &scenario.to_toml()).unwrap();
    assert_eq!(again, scenario);
}

#[test]
fn errors_name_file_line_and_field() {
    let cases = [
        (GOOD.replace("start-position", "nonsense"), "design", 2),
        (GOOD.replace("counter-v1", "counter-v7"), "vats.bundle", 5),
        (GOOD.replace("block = 2", "block = 9"), "crash", 12),
        (GOOD.replace("expect = \"passes\"", "expect = \"passes\"\nfailure = \"oops\""), "failure", 4),
    ];
    for (text, field, line) in cases {
        let message = error(&text);
        assert!(message.starts_with("scenarios/broken.toml: "), "{message}");
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(message.contains(&format!("`{field}`")), "{message}");
    }
}

#[test]
fn syntax_and_schema_errors_name_the_line() {
    for (text, needle) in [
        (GOOD.replace("[[crash]]", "[[crash]"), "line 12"),
        (GOOD.replace("at = \"point-a\"", "at = \"point-z\""), "point-z"),
        (GOOD.replace("nth = 1", "nth = 1\ncolour = \"red\""), "colour"),
        (GOOD.replace("expect = \"passes\"\n", ""), "expect"),
    ] {
        let message = error(&text);
        assert!(message.starts_with("scenarios/broken.toml: "), "{message}");
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

#[test]
fn unknown_fields_in_inputs_are_errors() {
    let text = GOOD.replace("args = [\"1\"]", "args = [\"1\"], colour = \"red\"");
    let message = error(&text);
    assert!(message.contains("colour") && message.contains("line 10"), "{message}");
}
