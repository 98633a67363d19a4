//! Images in SDK requests: a `data:` URL (OpenAI `image_url`) or a base64 source (Anthropic
//! `image` block), checked before anything runs: PNG, JPEG, GIF or WebP, valid base64, the
//! declared type matching the bytes, at most `[sdk] max_image_bytes` decoded. The base64 text
//! goes to the CLI unchanged. Remote URLs are refused: Claudeway never fetches a URL.

use crate::config::SdkConfig;
use crate::error::ApiError;

/// A checked image: its media type and its base64 data as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub media_type: String,
    pub data: String,
}

pub const MEDIA_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An OpenAI `image_url.url`: only `data:<type>;base64,<data>`.
pub fn from_url(url: &str, field: &str, cfg: &SdkConfig) -> Result<Image, ApiError> {
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(remote(field));
    };
    let (head, data) = rest.split_once(',').ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{field}` is not a valid data URL: expected data:<type>;base64,<data>"
        ))
    })?;
    let media_type = head.strip_suffix(";base64").ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{field}` must be a base64 data URL (data:<type>;base64,<data>)"
        ))
    })?;
    from_base64(media_type, data, field, cfg)
}

/// The error for a remote image.
pub fn remote(field: &str) -> ApiError {
    ApiError::bad_request(format!(
        "`{field}`: remote image URLs are not fetched; send the image inline as base64 (a data: URL, or an Anthropic base64 source)"
    ))
}

/// A base64 image of `media_type`.
pub fn from_base64(
    media_type: &str,
    data: &str,
    field: &str,
    cfg: &SdkConfig,
) -> Result<Image, ApiError> {
    let media_type = media_type.trim().to_ascii_lowercase();
    if !MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "`{field}`: image type `{media_type}` is not supported; use {}",
            MEDIA_TYPES.join(", ")
        )));
    }
    let len = decoded_len(data).ok_or_else(|| {
        ApiError::bad_request(format!("`{field}`: the image data is not valid base64"))
    })?;
    if len > cfg.max_image_bytes {
        return Err(ApiError::bad_request(format!(
            "`{field}`: the image is {len} bytes, more than the limit of {} bytes ([sdk] max_image_bytes)",
            cfg.max_image_bytes
        )));
    }
    let actual = sniff(&decode_prefix(data, 16));
    if actual != Some(media_type.as_str()) {
        return Err(ApiError::bad_request(format!(
            "`{field}`: the data is not a {media_type} image{}",
            actual
                .map(|a| format!(" (it looks like {a})"))
                .unwrap_or_default()
        )));
    }
    Ok(Image {
        media_type,
        data: data.to_string(),
    })
}

/// The media type the first bytes say.
fn sniff(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// The decoded size of standard base64 (padding optional), or None if it is not base64.
fn decoded_len(data: &str) -> Option<usize> {
    let body = data.trim_end_matches('=');
    let pad = data.len() - body.len();
    if body.is_empty() || pad > 2 || body.bytes().any(|c| value(c).is_none()) {
        return None;
    }
    match body.len() % 4 {
        1 => None,
        r => Some(body.len() / 4 * 3 + r.saturating_sub(1)),
    }
}

/// The first `n` decoded bytes (of data already checked by [`decoded_len`]).
fn decode_prefix(data: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in data.bytes().map_while(value) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
        if out.len() >= n {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
    const GIF: &str = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==";
    const WEBP: &str = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==";
    const JPEG: &str = "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA=";

    #[test]
    fn the_four_types_pass_and_mismatches_fail() {
        let cfg = SdkConfig::default();
        for (t, d) in [
            ("image/png", PNG),
            ("image/gif", GIF),
            ("image/webp", WEBP),
            ("image/jpeg", JPEG),
        ] {
            assert_eq!(from_base64(t, d, "x", &cfg).unwrap().media_type, t);
            let url = format!("data:{t};base64,{d}");
            assert_eq!(from_url(&url, "x", &cfg).unwrap().data, d);
        }
        let e = from_base64("image/jpeg", PNG, "f", &cfg).unwrap_err();
        assert!(e.message.contains("looks like image/png"), "{}", e.message);
        assert!(from_base64("image/bmp", PNG, "f", &cfg).is_err());
        assert!(from_base64("image/png", "not base64!", "f", &cfg).is_err());
        assert!(from_base64("image/png", "", "f", &cfg).is_err());
        let e = from_url("https://example.com/cat.png", "u", &cfg).unwrap_err();
        assert!(e.message.contains("not fetched"));
        assert!(from_url("data:image/png,abc", "u", &cfg).is_err());
        let small = SdkConfig {
            max_image_bytes: 60,
            ..SdkConfig::default()
        };
        let e = from_base64("image/png", PNG, "f", &small).unwrap_err();
        assert!(e.message.contains("69 bytes"), "{}", e.message);
    }

    #[test]
    fn base64_lengths() {
        assert_eq!(decoded_len("TWFu"), Some(3));
        assert_eq!(decoded_len("TWE="), Some(2));
        assert_eq!(decoded_len("TWE"), Some(2));
        assert_eq!(decoded_len("TQ=="), Some(1));
        assert_eq!(decoded_len("T"), None);
        assert_eq!(decode_prefix("TWFu", 16), b"Man");
    }
}
