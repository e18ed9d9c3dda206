//! The in-memory video library behind `GET /videos` and `POST /videos`.

use std::ops::RangeInclusive;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::payload;
use super::response::ProblemJson;
use crate::server::rng::{self, SplitMix64};

const DEFAULT_PAGE_SIZE: usize = 25;
/// api.video's documented bounds for `pageSize`.
const PAGE_SIZES: RangeInclusive<usize> = 1..=100;
const PAGES: RangeInclusive<usize> = 1..=usize::MAX;

const SEED_TITLES: [&str; 5] = [
    "Maths video",
    "Getting started with api.video",
    "Product demo",
    "Team all-hands",
    "Conference keynote",
];

/// A video object, in the `video` schema's shape.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Video {
    video_id: String,
    title: String,
    description: String,
    created_at: String,
    published_at: String,
    updated_at: String,
    discarded: bool,
    discarded_at: Option<String>,
    deletes_at: Option<String>,
    language: Option<String>,
    language_origin: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    player_id: Option<String>,
    tags: Vec<String>,
    metadata: Vec<Metadata>,
    source: Source,
    assets: Assets,
    public: bool,
    panoramic: bool,
    mp4_support: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Metadata {
    key: String,
    value: String,
}

#[derive(Clone, Serialize)]
struct Source {
    uri: String,
}

#[derive(Clone, Serialize)]
struct Assets {
    iframe: String,
    player: String,
    hls: String,
    thumbnail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mp4: Option<String>,
}

/// `video-creation-payload`, less the fields a mock has no use for (they are accepted and
/// ignored). `title` is checked before this is parsed, for api.video's precise error.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VideoCreation {
    title: String,
    description: Option<String>,
    public: Option<bool>,
    panoramic: Option<bool>,
    mp4_support: Option<bool>,
    tags: Option<Vec<String>>,
    metadata: Option<Vec<Metadata>>,
    player_id: Option<String>,
    language: Option<String>,
}

/// One page of `GET /videos`: the `videos-list-response` schema.
#[derive(Serialize)]
pub(super) struct VideosPage<'a> {
    data: Vec<&'a Video>,
    pagination: Pagination,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pagination {
    items_total: usize,
    pages_total: usize,
    page_size: usize,
    current_page: usize,
    current_page_items: usize,
    links: Vec<Link>,
}

#[derive(Serialize)]
struct Link {
    rel: &'static str,
    uri: String,
}

/// The videos, oldest first.
pub(super) struct VideoStore {
    videos: Vec<Video>,
    rng: SplitMix64,
}

impl VideoStore {
    /// A library holding `count` videos already.
    pub(super) fn seeded(count: usize) -> Self {
        let mut store = Self {
            videos: Vec::with_capacity(count),
            rng: SplitMix64::from_entropy(),
        };
        for index in 0..count {
            let base = SEED_TITLES[index % SEED_TITLES.len()];
            let title = match index / SEED_TITLES.len() {
                0 => base.to_owned(),
                round => format!("{base} ({})", round + 1),
            };
            store.insert(VideoCreation::titled(title));
        }
        store
    }

    /// Creates a video from a `video-creation-payload` body.
    pub(super) fn create(&mut self, body: &[u8]) -> Result<&Video, ProblemJson> {
        let object = payload::json_object(body)?;
        payload::required_string(&object, "title")?;
        let creation: VideoCreation = serde_json::from_value(object.into())
            .map_err(|error| ProblemJson::attribute_invalid().detail(error.to_string()))?;
        Ok(self.insert(creation))
    }

    /// The page a `GET /videos` query asks for.
    pub(super) fn page(&self, query: Option<&str>) -> Result<VideosPage<'_>, ProblemJson> {
        let current_page = int_param(query, "currentPage", 1, PAGES)?;
        let page_size = int_param(query, "pageSize", DEFAULT_PAGE_SIZE, PAGE_SIZES)?;
        let items_total = self.videos.len();
        // An empty library still has one (empty) page, so `first` and `last` exist.
        let pages_total = items_total.div_ceil(page_size).max(1);
        let data: Vec<&Video> = self
            .videos
            .iter()
            .skip((current_page - 1).saturating_mul(page_size))
            .take(page_size)
            .collect();
        Ok(VideosPage {
            pagination: Pagination {
                items_total,
                pages_total,
                page_size,
                current_page,
                current_page_items: data.len(),
                links: links(current_page, page_size, pages_total),
            },
            data,
        })
    }

    fn insert(&mut self, creation: VideoCreation) -> &Video {
        let video = Video::new(self.video_id(), creation);
        self.videos.push(video);
        &self.videos[self.videos.len() - 1]
    }

    fn video_id(&mut self) -> String {
        let mut id = String::with_capacity(24);
        id.push_str("vi");
        self.rng.push_chars(&mut id, rng::ALPHANUMERIC, 22);
        id
    }
}

impl VideoCreation {
    fn titled(title: String) -> Self {
        Self {
            title,
            description: None,
            public: None,
            panoramic: None,
            mp4_support: None,
            tags: None,
            metadata: None,
            player_id: None,
            language: None,
        }
    }
}

impl Video {
    /// A video as api.video returns it right after creation: nothing uploaded yet, but every
    /// asset URL already known.
    fn new(video_id: String, creation: VideoCreation) -> Self {
        let now = rfc3339(SystemTime::now());
        // The schema's defaults: public and mp4 on, panoramic off.
        let mp4_support = creation.mp4_support.unwrap_or(true);
        Self {
            assets: Assets {
                iframe: format!(
                    r#"<iframe src="https://embed.api.video/vod/{video_id}" width="100%" height="100%" frameborder="0" scrolling="no" allowfullscreen=""></iframe>"#
                ),
                player: format!("https://embed.api.video/vod/{video_id}"),
                hls: format!("https://cdn.api.video/vod/{video_id}/hls/manifest.m3u8"),
                thumbnail: format!("https://cdn.api.video/vod/{video_id}/thumbnail.jpg"),
                mp4: mp4_support
                    .then(|| format!("https://cdn.api.video/vod/{video_id}/mp4/source.mp4")),
            },
            source: Source {
                uri: format!("/videos/{video_id}/source"),
            },
            video_id,
            title: creation.title,
            description: creation.description.unwrap_or_default(),
            created_at: now.clone(),
            published_at: now.clone(),
            updated_at: now,
            discarded: false,
            discarded_at: None,
            deletes_at: None,
            language_origin: creation.language.is_some().then_some("api"),
            language: creation.language,
            player_id: creation.player_id,
            tags: creation.tags.unwrap_or_default(),
            metadata: creation.metadata.unwrap_or_default(),
            public: creation.public.unwrap_or(true),
            panoramic: creation.panoramic.unwrap_or(false),
            mp4_support,
        }
    }
}

fn links(current_page: usize, page_size: usize, pages_total: usize) -> Vec<Link> {
    let link = |rel, page| Link {
        rel,
        uri: format!("/videos?currentPage={page}&pageSize={page_size}"),
    };
    let mut links = vec![link("self", current_page), link("first", 1)];
    if current_page > 1 {
        links.push(link("previous", current_page - 1));
    }
    if current_page < pages_total {
        links.push(link("next", current_page + 1));
    }
    links.push(link("last", pages_total));
    links
}

/// An integer query parameter (the last one wins if repeated), or its default if absent.
fn int_param(
    query: Option<&str>,
    name: &'static str,
    default: usize,
    allowed: RangeInclusive<usize>,
) -> Result<usize, ProblemJson> {
    let Some(raw) = query_param(query, name) else {
        return Ok(default);
    };
    let value = raw
        .parse::<usize>()
        .map_err(|_| query_problem(name, "This parameter must be an integer."))?;
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(query_problem(
            name,
            "This parameter is out of the allowed range of values.",
        ))
    }
}

fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .rsplit('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn query_problem(name: &'static str, title: &'static str) -> ProblemJson {
    ProblemJson::new(
        StatusCode::BAD_REQUEST,
        "https://docs.api.video/reference/request-invalid-query-parameter",
        title,
    )
    .name(name)
}

/// `2024-05-28T11:15:07+00:00`: RFC 3339 in UTC, the way api.video writes it.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (year, month, day) = civil_from_days(seconds / 86_400);
    let time_of_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        time_of_day / 3600,
        time_of_day % 3600 / 60,
        time_of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm,
/// restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of each year.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> String {
        rfc3339(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(at(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(at(1_716_894_907), "2024-05-28T11:15:07+00:00");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59+00:00");
    }

    #[test]
    fn query_params_are_read_by_exact_name() {
        let query = Some("pageSize=5&currentPage=2&currentPageX=9&pageSize=7");
        assert_eq!(query_param(query, "currentPage"), Some("2"));
        assert_eq!(query_param(query, "pageSize"), Some("7"));
        assert_eq!(query_param(None, "pageSize"), None);
    }

    #[test]
    fn pages_cover_the_library_exactly() {
        let store = VideoStore::seeded(7);
        let sizes: Vec<usize> = (1..=4)
            .map(|page| {
                let query = format!("currentPage={page}&pageSize=3");
                store.page(Some(&query)).ok().unwrap().data.len()
            })
            .collect();
        assert_eq!(sizes, [3, 3, 1, 0]);
        assert_eq!(
            VideoStore::seeded(0)
                .page(None)
                .ok()
                .unwrap()
                .pagination
                .pages_total,
            1
        );
    }
}
