//! Cursor pagination: `?limit=` (default 20, max 100) and an opaque `?cursor=`.

use base64::Engine;
use petportrait_core::time::Millis;

use crate::error::ApiError;

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Where a page starts and how long it is.
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<(Millis, String)>,
}

impl PageRequest {
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
        let limit = match limit {
            None => 20,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return Err(ApiError::unprocessable("invalid_parameter", "limit must be between 1 and 100"));
                }
            },
        };
        let after =
            match cursor {
                None | Some("") => None,
                Some(text) => Some(decode_cursor(text).ok_or_else(|| {
                    ApiError::unprocessable("invalid_parameter", "cursor is not one this API returned")
                })?),
            };
        Ok(PageRequest { limit, after })
    }

    pub fn after(&self) -> Option<(Millis, &str)> {
        self.after.as_ref().map(|(at, id)| (*at, id.as_str()))
    }
}

pub fn encode_cursor(created_at: Millis, id: &str) -> String {
    ENGINE.encode(format!("{created_at}:{id}"))
}

fn decode_cursor(text: &str) -> Option<(Millis, String)> {
    let raw = String::from_utf8(ENGINE.decode(text).ok()?).ok()?;
    let (at, id) = raw.split_once(':')?;
    Some((at.parse().ok()?, id.to_owned()))
}

/// Fetch `limit + 1` rows; if the extra one came back, there is a next page.
pub fn split_page<T>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> (Millis, &str)) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|r| {
            let (at, id) = key(r);
            encode_cursor(at, id)
        });
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(1234, "gen_x");
        let p = PageRequest::parse(Some("5"), Some(&c)).expect("valid");
        assert_eq!(p.after(), Some((1234, "gen_x")));
        assert!(PageRequest::parse(None, Some("!!")).is_err());
        assert!(PageRequest::parse(Some("0"), None).is_err());
        assert!(PageRequest::parse(Some("101"), None).is_err());
        assert_eq!(PageRequest::parse(None, None).expect("defaults").limit, 20);
    }
}
