//! `Locale::from_accept_language` on arbitrary header values.

#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mt_paas::http::Locale;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let locale = Locale::from_accept_language(Some(&value));
    assert!(
        matches!(locale, Locale::Ko | Locale::En),
        "Korean or English"
    );
    // English is only ever chosen for an `en` tag.
    let names_en = data.windows(2).any(|w| w.eq_ignore_ascii_case(b"en"));
    if !names_en {
        assert_eq!(locale, Locale::Ko, "Korean unless English is asked for");
    }
});
