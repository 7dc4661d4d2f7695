//! Walks an image's container (JPEG segments, PNG chunks, RIFF chunks of WebP) to find
//! where the image really ends. Decoders are lenient: they fill a truncated JPEG with
//! grey and ignore whatever follows the image, which is where a polyglot (an image
//! that is also a ZIP, a PDF or a web page) keeps its second life. So a file must end
//! where its image ends, and its metadata must not carry markup or another document.

use super::{AcceptedFormat, ImageRejection};

/// Texts that mark another format hidden in an image's metadata. Matched without regard
/// to case; each is long enough never to turn up by chance in a real photo's metadata.
const FOREIGN_MARKERS: [&[u8]; 6] = [b"<script", b"<html", b"<!doctype", b"<?php", b"<svg", b"%pdf-"];

/// Where the image of `bytes` ends, and the byte ranges of its metadata segments.
struct Walk {
    end: usize,
    metadata: Vec<std::ops::Range<usize>>,
}

/// Checks that the file is one whole image and nothing else, and answers how many of
/// its bytes are the image. What may follow is padding with zeros, or a trailer that
/// cameras and phones write and that is known to be inert for us (see
/// `is_known_trailer`); the caller keeps only the image's bytes.
pub fn check(bytes: &[u8], format: AcceptedFormat) -> Result<usize, ImageRejection> {
    let mut walk = match format {
        AcceptedFormat::Jpeg => walk_jpeg(bytes),
        AcceptedFormat::Png => walk_png(bytes),
        AcceptedFormat::Webp => walk_webp(bytes),
    }?;
    // Phones append further JPEGs after the first one's end (MPF: the gain map of an
    // Ultra HDR photo, a depth map). Each must be whole and is checked like the first.
    if matches!(format, AcceptedFormat::Jpeg) {
        while bytes[walk.end..].starts_with(&[0xFF, 0xD8]) {
            let base = walk.end;
            let next = walk_jpeg(&bytes[base..])?;
            walk.metadata.extend(next.metadata.into_iter().map(|r| r.start + base..r.end + base));
            walk.end = base + next.end;
        }
    }
    // Some writers pad a file with zeros after the image; phones append a motion
    // photo's video or Samsung's trailer; anything else is a payload.
    let trailing = &bytes[walk.end..];
    if let Some(first) = trailing.iter().position(|b| *b != 0)
        && !(matches!(format, AcceptedFormat::Jpeg) && is_known_trailer(trailing))
    {
        return Err(ImageRejection::Polyglot { reason: "data follows the end of the image", offset: walk.end + first });
    }
    for range in walk.metadata {
        if let Some(at) = find_foreign_marker(&bytes[range.clone()]) {
            return Err(ImageRejection::Polyglot {
                reason: "the metadata holds markup or a document",
                offset: range.start + at,
            });
        }
    }
    Ok(walk.end)
}

/// Trailers phones write after a JPEG: a motion photo's MP4 video (Google's and
/// Samsung's "motion photos", a sequence of MP4 boxes starting with `ftyp`, possibly
/// after Samsung's `MotionPhoto_Data` marker) and Samsung's SEF block (ending with
/// `SEFT`). They are checked for their own structure, not just a magic number, and are
/// never stored: only the image's bytes are kept.
fn is_known_trailer(trailing: &[u8]) -> bool {
    const MOTION_PHOTO_MARKER: &[u8] = b"MotionPhoto_Data";
    let before_sef = match sef_block_start(trailing) {
        Some(start) => &trailing[..start],
        None => trailing,
    };
    if before_sef.is_empty() {
        // A SEF block alone (an empty trailer never gets here).
        return true;
    }
    let video = before_sef.strip_prefix(MOTION_PHOTO_MARKER).unwrap_or(before_sef);
    video.get(4..8) == Some(b"ftyp") && is_mp4_boxes(video)
}

/// Where Samsung's SEF block starts, if the trailer ends with one:
/// `SEFH ... <length: u32 little-endian> SEFT`, the length counting from `SEFH`.
fn sef_block_start(trailing: &[u8]) -> Option<usize> {
    let n = trailing.len();
    if n < 8 || !trailing.ends_with(b"SEFT") {
        return None;
    }
    let length = u32::from_le_bytes([trailing[n - 8], trailing[n - 7], trailing[n - 6], trailing[n - 5]]) as usize;
    let start = n.checked_sub(8)?.checked_sub(length)?;
    trailing[start..].starts_with(b"SEFH").then_some(start)
}

/// Whether `data` is a whole sequence of MP4 boxes (size, four-letter type, body).
fn is_mp4_boxes(data: &[u8]) -> bool {
    let mut at = 0;
    while at < data.len() {
        let Some(header) = data.get(at..at + 8) else { return false };
        if !header[4..8].iter().all(|b| b.is_ascii_alphanumeric() || *b == b' ') {
            return false;
        }
        let size = match u32::from_be_bytes([header[0], header[1], header[2], header[3]]) {
            0 => data.len() - at,
            1 => match data.get(at + 8..at + 16) {
                Some(large) => usize::try_from(u64::from_be_bytes(large.try_into().unwrap_or([0; 8]))).unwrap_or(0),
                None => return false,
            },
            n => n as usize,
        };
        if size < 8 || at + size > data.len() {
            return false;
        }
        at += size;
    }
    true
}

fn find_foreign_marker(data: &[u8]) -> Option<usize> {
    FOREIGN_MARKERS
        .iter()
        .filter_map(|marker| data.windows(marker.len()).position(|w| w.eq_ignore_ascii_case(marker)))
        .min()
}

fn malformed(what: &'static str) -> ImageRejection {
    ImageRejection::Malformed(what)
}

fn walk_jpeg(bytes: &[u8]) -> Result<Walk, ImageRejection> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(malformed("a JPEG must start with SOI"));
    }
    let mut metadata = Vec::new();
    let mut i = 2;
    loop {
        if i >= bytes.len() {
            return Err(ImageRejection::Truncated);
        }
        if bytes[i] != 0xFF {
            return Err(malformed("a JPEG segment must start with a marker"));
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else { return Err(ImageRejection::Truncated) };
        i += 1;
        match marker {
            0xD9 => return Ok(Walk { end: i, metadata }),
            // Markers without a length: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let length = match bytes.get(i..i + 2) {
            Some(b) => usize::from(u16::from_be_bytes([b[0], b[1]])),
            None => return Err(ImageRejection::Truncated),
        };
        if length < 2 {
            return Err(malformed("a JPEG segment length is shorter than itself"));
        }
        if i + length > bytes.len() {
            return Err(ImageRejection::Truncated);
        }
        // APPn and COM segments carry metadata (EXIF, XMP, ICC, comments).
        if (0xE0..=0xEF).contains(&marker) || marker == 0xFE {
            metadata.push(i + 2..i + length);
        }
        i += length;
        if marker == 0xDA {
            i = skip_entropy_coded_data(bytes, i)?;
        }
    }
}

/// After a start-of-scan header: the index of the next marker that is not a stuffed
/// 0xFF00 byte or a restart marker.
fn skip_entropy_coded_data(bytes: &[u8], mut i: usize) -> Result<usize, ImageRejection> {
    loop {
        let Some(offset) = bytes[i.min(bytes.len())..].iter().position(|b| *b == 0xFF) else {
            return Err(ImageRejection::Truncated);
        };
        i += offset;
        match bytes.get(i + 1) {
            None => return Err(ImageRejection::Truncated),
            Some(0x00 | 0xD0..=0xD7 | 0xFF) => i += 1,
            Some(_) => return Ok(i),
        }
    }
}

fn walk_png(bytes: &[u8]) -> Result<Walk, ImageRejection> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    if !bytes.starts_with(&SIGNATURE) {
        return Err(malformed("a PNG must start with its signature"));
    }
    let mut metadata = Vec::new();
    let mut i = SIGNATURE.len();
    loop {
        let Some(header) = bytes.get(i..i + 8) else { return Err(ImageRejection::Truncated) };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length > 0x7FFF_FFFF {
            return Err(malformed("a PNG chunk length exceeds 2^31 - 1"));
        }
        let kind = [header[4], header[5], header[6], header[7]];
        let data = i + 8..i + 8 + length;
        // The chunk's data and its CRC must be there.
        if data.end + 4 > bytes.len() {
            return Err(ImageRejection::Truncated);
        }
        if matches!(&kind, b"tEXt" | b"zTXt" | b"iTXt" | b"eXIf") {
            metadata.push(data.clone());
        }
        i = data.end + 4;
        if &kind == b"IEND" {
            return Ok(Walk { end: i, metadata });
        }
    }
}

fn walk_webp(bytes: &[u8]) -> Result<Walk, ImageRejection> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(malformed("a WebP must start with RIFF....WEBP"));
    }
    let declared = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let end = 8 + declared;
    if end > bytes.len() {
        return Err(ImageRejection::Truncated);
    }
    let mut metadata = Vec::new();
    let mut i = 12;
    while i < end {
        let Some(header) = bytes.get(i..i + 8).filter(|_| i + 8 <= end) else {
            return Err(malformed("a WebP chunk header crosses the end of the RIFF"));
        };
        let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let data = i + 8..i + 8 + length;
        if data.end > end {
            return Err(malformed("a WebP chunk crosses the end of the RIFF"));
        }
        if matches!(&header[0..4], b"EXIF" | b"XMP ") {
            metadata.push(data.clone());
        }
        // Chunks are padded to an even length.
        i = data.end + (length & 1);
    }
    Ok(Walk { end, metadata })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::ImageFormat;

    use super::*;

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(48, 32, |x, y| image::Rgb([(x * 5) as u8, (y * 7) as u8, 90]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).expect("encode");
        out
    }

    fn accepted(format: ImageFormat) -> AcceptedFormat {
        match format {
            ImageFormat::Jpeg => AcceptedFormat::Jpeg,
            ImageFormat::Png => AcceptedFormat::Png,
            _ => AcceptedFormat::Webp,
        }
    }

    #[test]
    fn whole_images_pass_and_zero_padding_is_tolerated() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let mut bytes = encoded(format);
            check(&bytes, accepted(format)).expect("a whole image");
            bytes.extend_from_slice(&[0; 16]);
            check(&bytes, accepted(format)).expect("zero padding");
        }
    }

    #[test]
    fn a_cut_image_is_truncated() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let bytes = encoded(format);
            for cut in [bytes.len() - 1, bytes.len() / 2, 20] {
                let err = check(&bytes[..cut], accepted(format)).expect_err("cut");
                assert_eq!(err.code(), "image_truncated", "{format:?} cut at {cut}: {err}");
            }
        }
    }

    #[test]
    fn a_zip_or_html_after_the_image_is_a_polyglot() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let mut bytes = encoded(format);
            bytes.extend_from_slice(b"PK\x03\x04 a zip archive would follow here");
            let err = check(&bytes, accepted(format)).expect_err("payload after the image");
            assert_eq!(err.code(), "image_polyglot", "{format:?}");
        }
    }

    #[test]
    fn a_phone_jpeg_with_a_second_image_after_the_first_passes() {
        let first = encoded(ImageFormat::Jpeg);
        let mut two = first.clone();
        two.extend_from_slice(&first);
        check(&two, AcceptedFormat::Jpeg).expect("a multi-picture JPEG");
        // The appended image must be whole too, and may not carry a payload after it.
        let cut = &two[..first.len() + first.len() / 2];
        assert_eq!(check(cut, AcceptedFormat::Jpeg).expect_err("cut").code(), "image_truncated");
        two.extend_from_slice(b"<html>");
        assert_eq!(check(&two, AcceptedFormat::Jpeg).expect_err("payload").code(), "image_polyglot");
    }

    /// An MP4 box: size, type, body.
    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn a_motion_photo_video_or_samsung_trailer_is_accepted_and_left_out() {
        let image = encoded(ImageFormat::Jpeg);
        let video = [mp4_box(b"ftyp", b"mp42isom"), mp4_box(b"mdat", &[7; 100])].concat();
        let sef_body = b"SEFH some Samsung records";
        let mut sef = sef_body.to_vec();
        sef.extend_from_slice(&(sef_body.len() as u32).to_le_bytes());
        sef.extend_from_slice(b"SEFT");
        for trailer in [video.clone(), [b"MotionPhoto_Data".to_vec(), video.clone(), sef.clone()].concat(), sef.clone()]
        {
            let file = [image.clone(), trailer].concat();
            assert_eq!(check(&file, AcceptedFormat::Jpeg).expect("a phone photo"), image.len());
        }
        // A trailer that only starts like a video is still a payload.
        let fake = [image.clone(), video[..20].to_vec(), b"<html><script>".to_vec()].concat();
        assert_eq!(check(&fake, AcceptedFormat::Jpeg).expect_err("payload").code(), "image_polyglot");
        // PNG and WebP have no such trailers.
        let png = [encoded(ImageFormat::Png), video].concat();
        assert_eq!(check(&png, AcceptedFormat::Png).expect_err("payload").code(), "image_polyglot");
    }

    #[test]
    fn markup_in_a_jpeg_comment_is_a_polyglot() {
        let bytes = encoded(ImageFormat::Jpeg);
        let comment = b"<SCRIPT>alert(1)</SCRIPT>";
        let mut with_comment = bytes[..2].to_vec();
        with_comment.extend_from_slice(&[0xFF, 0xFE]);
        with_comment.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
        with_comment.extend_from_slice(comment);
        with_comment.extend_from_slice(&bytes[2..]);
        let err = check(&with_comment, AcceptedFormat::Jpeg).expect_err("markup");
        assert_eq!(err.code(), "image_polyglot");
        // The same comment in plain words is fine.
        let mut plain = bytes[..2].to_vec();
        plain.extend_from_slice(&[0xFF, 0xFE, 0x00, 0x0C]);
        plain.extend_from_slice(b"my cat Tom");
        plain.extend_from_slice(&bytes[2..]);
        check(&plain, AcceptedFormat::Jpeg).expect("a plain comment");
    }

    #[test]
    fn a_broken_segment_structure_is_corrupt() {
        let mut bytes = encoded(ImageFormat::Jpeg);
        bytes[2] = 0x12; // the first marker's 0xFF
        assert_eq!(check(&bytes, AcceptedFormat::Jpeg).expect_err("broken").code(), "image_corrupt");
    }
}
