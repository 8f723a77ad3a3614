//! axum's extractor rejections (serde's English, as plain text) read into a field and a
//! message in each language, so a problem is in the requested language through and through:
//! `missing field `message` at line 1 column 2` becomes `"field": "message"` and
//! "필수 필드 `message`가 없습니다." / "The field `message` is missing.".

/// A rejection, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Explained {
    /// The field it concerns (a path such as `items[0].title`), when serde named one.
    pub field: Option<String>,
    pub ko: String,
    pub en: String,
}

/// Reads an axum rejection's text; `None` when it is not one this knows.
pub(crate) fn explain(text: &str) -> Option<Explained> {
    const SOURCES: &[(&str, &str, &str)] = &[
        (
            "Failed to deserialize the JSON body into the target type: ",
            "요청 본문",
            "the request body",
        ),
        (
            "Failed to deserialize query string: ",
            "쿼리 문자열",
            "the query string",
        ),
        ("Failed to deserialize form: ", "폼 본문", "the form body"),
        (
            "Failed to deserialize form body: ",
            "폼 본문",
            "the form body",
        ),
    ];
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("Failed to parse the request body as JSON: ") {
        let (_, at) = split_position(inner);
        return Some(Explained {
            field: None,
            ko: format!("요청 본문이 올바른 JSON이 아닙니다{}.", at.ko()),
            en: format!("The request body is not valid JSON{}.", at.en()),
        });
    }
    if text.starts_with("Expected request with `Content-Type: application/json`") {
        return Some(Explained {
            field: None,
            ko: "요청의 Content-Type은 application/json이어야 합니다.".to_owned(),
            en: "The request's Content-Type must be application/json.".to_owned(),
        });
    }
    let (inner, source_ko, source_en) = SOURCES
        .iter()
        .find_map(|(prefix, ko, en)| text.strip_prefix(prefix).map(|rest| (rest, *ko, *en)))?;
    let (message, _) = split_position(inner);
    let (path, message) = split_path(message);
    let within = |field: &str| match path {
        Some(p) => format!("{p}.{field}"),
        None => field.to_owned(),
    };
    if let Some(field) = quoted_after(message, "missing field ") {
        let field = within(field);
        return Some(Explained {
            ko: format!("{source_ko}에 필수 필드 `{field}`가 없습니다."),
            en: format!("The field `{field}` is missing from {source_en}."),
            field: Some(field),
        });
    }
    if let Some(field) = quoted_after(message, "unknown field ") {
        let field = within(field);
        return Some(Explained {
            ko: format!("{source_ko}에 알 수 없는 필드 `{field}`가 있습니다."),
            en: format!("{} has an unknown field `{field}`.", capitalized(source_en)),
            field: Some(field),
        });
    }
    if let Some(field) = quoted_after(message, "duplicate field ") {
        let field = within(field);
        return Some(Explained {
            ko: format!("{source_ko}에 필드 `{field}`가 두 번 있습니다."),
            en: format!("The field `{field}` appears twice in {source_en}."),
            field: Some(field),
        });
    }
    let field = path.map(str::to_owned);
    let named_ko = field
        .as_deref()
        .map_or_else(|| source_ko.to_owned(), |f| format!("필드 `{f}`"));
    let named_en = field
        .as_deref()
        .map_or_else(|| source_en.to_owned(), |f| format!("the field `{f}`"));
    if let Some(value) = quoted_after(message, "unknown variant ") {
        let allowed = message
            .split_once("expected ")
            .map(|(_, e)| e.trim_start_matches("one of "))
            .unwrap_or_default();
        return Some(Explained {
            ko: format!("{named_ko}의 값 `{value}`은 허용되지 않습니다. 가능한 값: {allowed}."),
            en: format!(
                "{} does not allow `{value}`; expected {allowed}.",
                capitalized(&named_en)
            ),
            field,
        });
    }
    for (prefix, ko_what, en_what) in [
        ("invalid type: ", "형식", "type"),
        ("invalid value: ", "값", "value"),
        ("invalid length ", "길이", "length"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((_, expected)) = rest.split_once(", expected ")
        {
            return Some(Explained {
                ko: format!(
                    "{named_ko}의 {ko_what}이 잘못되었습니다. {}이어야 합니다.",
                    expected_ko(expected)
                ),
                en: format!(
                    "{} has the wrong {en_what}: expected {expected}.",
                    capitalized(&named_en)
                ),
                field,
            });
        }
    }
    // Another reason about a named field: the field, and serde's words only in English.
    field.map(|f| Explained {
        ko: format!("필드 `{f}`의 값을 읽을 수 없습니다."),
        en: format!("The field `{f}` could not be read: {message}."),
        field: Some(f),
    })
}

/// Where in the body serde stopped.
struct Position<'a>(Option<(&'a str, &'a str)>);

impl Position<'_> {
    fn ko(&self) -> String {
        self.0
            .map(|(line, column)| format!(" ({line}행 {column}열)"))
            .unwrap_or_default()
    }

    fn en(&self) -> String {
        self.0
            .map(|(line, column)| format!(" (line {line}, column {column})"))
            .unwrap_or_default()
    }
}

/// `"msg at line 1 column 2"` → (`"msg"`, line 1, column 2).
fn split_position(text: &str) -> (&str, Position<'_>) {
    if let Some((message, at)) = text.rsplit_once(" at line ")
        && let Some((line, column)) = at.split_once(" column ")
        && line.bytes().all(|b| b.is_ascii_digit())
        && column.bytes().all(|b| b.is_ascii_digit())
    {
        return (message, Position(Some((line, column))));
    }
    (text, Position(None))
}

/// serde_path_to_error's `"items[0].title: invalid type …"` → (`items[0].title`, the rest).
fn split_path(text: &str) -> (Option<&str>, &str) {
    if let Some((path, rest)) = text.split_once(": ")
        && !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']' | b'-'))
    {
        return (Some(path), rest);
    }
    (None, text)
}

/// The name in backticks right after `prefix`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// serde's "expected …" in Korean, for the common types.
fn expected_ko(expected: &str) -> String {
    let e = expected.trim();
    let word = match e {
        "a string" | "a borrowed string" | "a character" => "문자열",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "정수",
        "f32" | "f64" | "a number" => "숫자",
        "a boolean" => "true 또는 false",
        "a sequence" => "배열",
        "a map" => "객체",
        _ if e.starts_with("struct ") || e.starts_with("a map") => "객체",
        _ if e.starts_with("a sequence") || e.starts_with("an array") => "배열",
        _ => return format!("`{e}`"),
    };
    word.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(text: &str) -> Explained {
        explain(text).unwrap_or_else(|| panic!("not explained: {text}"))
    }

    #[test]
    fn serde_reasons_become_a_field_and_two_languages() {
        let e = ex(
            "Failed to deserialize the JSON body into the target type: missing field `message` at line 1 column 2",
        );
        assert_eq!(e.field.as_deref(), Some("message"));
        assert_eq!(e.ko, "요청 본문에 필수 필드 `message`가 없습니다.");
        assert_eq!(
            e.en,
            "The field `message` is missing from the request body."
        );

        let e = ex(
            "Failed to deserialize the JSON body into the target type: title: invalid type: integer `1`, expected a string at line 1 column 11",
        );
        assert_eq!(e.field.as_deref(), Some("title"));
        assert_eq!(
            e.ko,
            "필드 `title`의 형식이 잘못되었습니다. 문자열이어야 합니다."
        );
        assert_eq!(
            e.en,
            "The field `title` has the wrong type: expected a string."
        );

        let e = ex(
            "Failed to deserialize the JSON body into the target type: items[0]: missing field `name` at line 1 column 14",
        );
        assert_eq!(e.field.as_deref(), Some("items[0].name"));

        let e = ex(
            "Failed to deserialize the JSON body into the target type: unknown field `titel`, expected `title` at line 1 column 8",
        );
        assert_eq!(e.field.as_deref(), Some("titel"));
        assert!(e.ko.contains("알 수 없는 필드 `titel`"), "{}", e.ko);

        let e = ex(
            "Failed to deserialize the JSON body into the target type: level: unknown variant `x`, expected one of `low`, `high` at line 1 column 12",
        );
        assert_eq!(e.field.as_deref(), Some("level"));
        assert!(
            e.ko.contains("`x`") && e.ko.contains("`low`, `high`"),
            "{}",
            e.ko
        );

        let e = ex("Failed to parse the request body as JSON: expected value at line 1 column 1");
        assert_eq!(e.field, None);
        assert_eq!(e.ko, "요청 본문이 올바른 JSON이 아닙니다 (1행 1열).");
        assert_eq!(
            e.en,
            "The request body is not valid JSON (line 1, column 1)."
        );

        // A reason of another shape about a named field: the field, in both languages.
        let e = ex("Failed to deserialize query string: limit: invalid digit found in string");
        assert_eq!(e.field.as_deref(), Some("limit"));
        assert_eq!(e.ko, "필드 `limit`의 값을 읽을 수 없습니다.");
        // Nothing this knows: nothing is made up.
        assert!(explain("something else entirely").is_none());
    }

    #[test]
    fn odd_text_is_never_a_panic() {
        for text in [
            "",
            "Failed to deserialize the JSON body into the target type: ",
            "Failed to deserialize the JSON body into the target type: missing field `",
            "Failed to deserialize the JSON body into the target type: : invalid type: , expected ",
            "Failed to parse the request body as JSON: at line x column y",
            "Failed to deserialize query string: 한글: invalid value: `가`, expected 나",
        ] {
            let _ = explain(text);
        }
    }
}
