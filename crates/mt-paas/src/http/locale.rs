//! The two languages of mt-paas's messages, chosen by `Accept-Language` (Korean by default).

use http::HeaderValue;

/// A language of user-facing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Locale {
    /// Korean, the default (seed).
    #[default]
    Ko,
    /// English.
    En,
}

impl Locale {
    /// The language tag, for `Content-Language`.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Ko => "ko",
            Self::En => "en",
        }
    }

    /// The best of `ko` and `en` for an `Accept-Language` value: the highest `q` wins, the
    /// earlier entry on a tie; Korean when neither is acceptable or the header is absent.
    ///
    /// ```
    /// use mt_paas::http::Locale;
    /// use http::HeaderValue;
    ///
    /// let pick = |v: &'static str| Locale::from_accept_language(Some(&HeaderValue::from_static(v)));
    /// assert_eq!(pick("en"), Locale::En);
    /// assert_eq!(pick("en-US,en;q=0.9"), Locale::En);
    /// assert_eq!(pick("ko-KR,en;q=0.5"), Locale::Ko);
    /// assert_eq!(pick("fr, en;q=0.1"), Locale::En);
    /// assert_eq!(pick("fr"), Locale::Ko);
    /// assert_eq!(Locale::from_accept_language(None), Locale::Ko);
    /// ```
    pub fn from_accept_language(value: Option<&HeaderValue>) -> Self {
        let Some(value) = value.and_then(|v| v.to_str().ok()) else {
            return Self::Ko;
        };
        let mut best: Option<(f32, Self)> = None;
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let primary = tag.split('-').next().unwrap_or_default();
            let locale = if primary.eq_ignore_ascii_case("en") {
                Self::En
            } else if primary.eq_ignore_ascii_case("ko") {
                Self::Ko
            } else {
                continue;
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, locale));
            }
        }
        best.map_or(Self::Ko, |(_, l)| l)
    }
}
