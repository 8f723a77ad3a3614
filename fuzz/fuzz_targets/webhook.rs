//! Standard Webhooks verification with two real secrets. The input's first four lines are
//! `webhook-id`, `webhook-timestamp`, `webhook-signature` and the receiver's clock (Unix
//! seconds; a line that is not a number is read as 1700000000); the rest is the body.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mt_paas_protocol::webhook::{
    MAX_BODY, MAX_ID_LEN, Verifier, WebhookError, WebhookSecret, sign,
};

/// Standard Webhooks' reference vector secret, and the SDK's development secret.
const SECRETS: [&str; 2] = [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_bXQtcGFhcy1kZXYtd2ViaG9vay1zZWNyZXQtMzJieQ==",
];
/// A secret the verifier does not accept.
const OTHER: &str = "whsec_b3RoZXItc2VjcmV0LW5vdC1hY2NlcHRlZC0zMmJ5";

static KEYS: LazyLock<(Vec<WebhookSecret>, Verifier, WebhookSecret)> = LazyLock::new(|| {
    let secrets: Vec<WebhookSecret> = SECRETS
        .iter()
        .map(|s| s.parse().expect("a valid secret"))
        .collect();
    let other = OTHER.parse().expect("a valid secret");
    (secrets.clone(), Verifier::new(secrets), other)
});

fn line(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::from_utf8_lossy(data).into_owned(), &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (secrets, verifier, other) = &*KEYS;
    let (id, rest) = line(data);
    let (timestamp, rest) = line(rest);
    let (signature, rest) = line(rest);
    let (now, body) = line(rest);
    let now: i64 = now.trim().parse().unwrap_or(1_700_000_000);

    let result = verifier.verify(&id, &timestamp, &signature, body, now);
    if result.is_ok() {
        // Accepted: one of the offered signatures is a real secret's signature of this
        // message (checked when the timestamp is written canonically).
        let sent: i64 = timestamp
            .trim()
            .parse()
            .expect("an accepted timestamp parses");
        if sent.to_string() == timestamp.trim() {
            let offered: Vec<&str> = signature.split_ascii_whitespace().collect();
            assert!(
                secrets
                    .iter()
                    .any(|s| offered.contains(&sign(s, &id, sent, body).signature.as_str())),
                "an accepted message carries a real signature"
            );
        }
    }

    // Round trip: this message signed now with an accepted secret verifies whenever its id and
    // body are acceptable; signed with another secret it never does.
    let id_ok =
        !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    let signed = sign(&secrets[1], &id, now, body);
    let result = verifier.verify(&id, &signed.timestamp, &signed.signature, body, now);
    if id_ok && body.len() <= MAX_BODY {
        assert_eq!(
            result,
            Ok(()),
            "a message signed with an accepted secret verifies"
        );
        let forged = sign(other, &id, now, body);
        assert_eq!(
            verifier.verify(&id, &forged.timestamp, &forged.signature, body, now),
            Err(WebhookError::NoMatchingSignature),
            "a message signed with another secret is refused"
        );
    } else {
        assert!(result.is_err(), "an invalid id or a large body is refused");
    }
});
