//! Keyset pagination with opaque cursors.
//!
//! Ids are UUID v7, ordered by creation time, so "the rows after this id" is a stable,
//! index-friendly page boundary: no `OFFSET` scans, and no skipped or repeated rows when
//! new rows arrive between two pages. The cursor is the last id of the page, encoded so
//! that clients treat it as opaque.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Deserialize;
use shop_model::api::Page;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, FieldErrors};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

/// `?limit=&cursor=` of every list endpoint.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: u32,
    /// Return rows after this id (in the endpoint's order).
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// The number of rows to fetch: one more than the page, to learn whether another
    /// page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

impl TryFrom<&PageParams> for PageRequest {
    type Error = ApiError;

    fn try_from(params: &PageParams) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::new();
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.add("limit", format!("must be between 1 and {MAX_LIMIT}"));
        }
        let after = match &params.cursor {
            None => None,
            Some(cursor) => errors.check("cursor", decode_cursor(cursor)),
        };
        errors.finish()?;
        Ok(Self { limit, after })
    }
}

pub fn encode_cursor(last_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_id}"))
}

fn decode_cursor(cursor: &str) -> Result<Uuid, &'static str> {
    const INVALID: &str = "is not a cursor returned by this API";
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| INVALID)?;
    let text = String::from_utf8(bytes).map_err(|_| INVALID)?;
    let id = text.strip_prefix("v1:").ok_or(INVALID)?;
    Uuid::parse_str(id).map_err(|_| INVALID)
}

/// Builds a page from `fetch_limit()` rows: keeps `limit` of them and sets the cursor
/// when there was one more.
pub fn into_page<T>(mut rows: Vec<T>, request: PageRequest, id_of: impl Fn(&T) -> Uuid) -> Page<T> {
    let limit = request.limit as usize;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if has_more {
        rows.last().map(|row| encode_cursor(id_of(row)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Ok(id));
    }

    #[test]
    fn foreign_cursors_and_limits_are_rejected() {
        let params = PageParams {
            limit: Some(0),
            cursor: Some("bm9wZQ".to_owned()),
        };
        let Err(ApiError::Validation(errors)) = PageRequest::try_from(&params) else {
            panic!("expected a validation error");
        };
        let problem = ApiError::Validation(errors).problem();
        let fields = problem.errors.expect("fields");
        assert!(fields.contains_key("limit") && fields.contains_key("cursor"));
        let too_big = PageParams {
            limit: Some(MAX_LIMIT + 1),
            cursor: None,
        };
        assert!(PageRequest::try_from(&too_big).is_err());
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_follow() {
        let request = PageRequest {
            limit: 2,
            after: None,
        };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = into_page(ids.clone(), request, |id| *id);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(encode_cursor(ids[1])));
        let last = into_page(ids[..2].to_vec(), request, |id| *id);
        assert_eq!(last.next_cursor, None);
    }
}
