//! The config loader (defaults ⊕ base ⊕ overlay → `${VAR}` → typed config → cross-key rules)
//! on arbitrary YAML. The input is the base file; when it holds a line `#overlay`, what
//! follows is the overlay `mt_paas_config.fuzz.yaml` (env `fuzz`). Errors are fine; a loaded
//! config must also build its identifier and token verifier and print its redacted YAML.

#![no_main]

use std::{path::PathBuf, sync::LazyLock};

use libfuzzer_sys::fuzz_target;
use mt_paas::{TokenVerifier, config::ConfigLoader, fuzzing};

/// The base file's path, in a temp dir that lives as long as the process.
static BASE: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temp dir").keep();
    dir.join("mt_paas_config.yaml")
});

const MARKER: &[u8] = b"\n#overlay\n";

fuzz_target!(|data: &[u8]| {
    let base = &*BASE;
    let loader = ConfigLoader::new(base).vars(|name| match name {
        "FUZZ_SECRET" => Some("fuzz-jwt-secret-0123456789abcdef".to_owned()),
        "FUZZ_PORT" => Some("8000".to_owned()),
        _ => None,
    });
    let loader = match data.windows(MARKER.len()).position(|w| w == MARKER) {
        Some(at) => {
            std::fs::write(base, &data[..at]).expect("write the base");
            std::fs::write(loader.overlay_path("fuzz"), &data[at + MARKER.len()..])
                .expect("write the overlay");
            loader.env(Some("fuzz"))
        }
        None => {
            std::fs::write(base, data).expect("write the base");
            loader.env(None)
        }
    };
    match loader.load() {
        Ok(config) => {
            let _ = fuzzing::identifier(&config);
            let _ = TokenVerifier::from_config(&config);
            let _ = config.to_redacted_yaml();
        }
        Err(e) => {
            assert!(
                !e.problems.is_empty(),
                "an error names at least one problem"
            );
            let _ = e.to_string();
        }
    }
});
