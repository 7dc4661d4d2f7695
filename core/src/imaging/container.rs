//! Walks an image's container (JPEG segments, PNG chunks, RIFF chunks of WebP) to find
//! where the image really ends. Decoders are lenient: they fill a truncated JPEG with
//! grey and ignore whatever follows the image, which is where a polyglot (an image
//! that is also a ZIP, a PDF or a web page) keeps its second life.
//!
//! The rules: the image must be whole (else `image_truncated`); what follows it is never
//! stored, and the file is refused as `image_polyglot` when that trailer, or the text
//! metadata (XMP, comments, PNG text chunks), makes the file another program's
//! document: a ZIP archive, a PDF, a web page or a script. Other trailers are what
//! phones and cameras write (further JPEGs of a multi-picture file, a motion photo's
//! video, Samsung's records) and are simply left out.

use std::ops::Range;

use super::{AcceptedFormat, ImageRejection};

/// Texts that mark a web page, script or PDF hidden in an image's text metadata or
/// trailer. Matched without regard to case; each is long enough not to turn up by
/// chance in real metadata or in a phone's trailer (a video's bytes included).
const FOREIGN_MARKERS: [&[u8]; 6] = [b"<script", b"<html", b"<!doctype", b"<?php", b"<svg", b"%pdf-"];

/// Where the image of `bytes` ends, the byte ranges of its text metadata (XMP,
/// comments, PNG text chunks), and the ranges a decoder needs (`kept`). Binary metadata
/// (EXIF with its thumbnail, ICC profiles) is not searched for markup: its bytes can
/// spell anything by chance. It is not kept either.
struct Walk {
    end: usize,
    text: Vec<Range<usize>>,
    kept: Vec<Range<usize>>,
}

/// A whole image, checked.
#[derive(Debug)]
pub struct Checked {
    format: AcceptedFormat,
    /// How many leading bytes of the file are its (first) image.
    pub end: usize,
    kept: Vec<Range<usize>>,
}

impl Checked {
    /// The image with only what its pixels need: JPEG's tables, frame and scans; PNG's
    /// header, palette, transparency, colour space and data chunks; WebP's bitstreams.
    /// Segments are dropped, never re-encoded, so the pixels are exactly those of the
    /// file: EXIF (GPS, camera serials, thumbnails), XMP, comments, text chunks, ICC
    /// profiles and private chunks go, and with them anything hidden in them.
    pub fn stripped(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.end);
        if self.format == AcceptedFormat::Webp {
            out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
        }
        for range in &self.kept {
            let at = out.len();
            out.extend_from_slice(&bytes[range.clone()]);
            if self.format == AcceptedFormat::Webp && &bytes[range.start..range.start + 4] == b"VP8X" {
                // The extended header's flags say which chunks follow: no ICC, EXIF or XMP now.
                out[at + 8] &= !(VP8X_ICC | VP8X_EXIF | VP8X_XMP);
            }
        }
        if self.format == AcceptedFormat::Webp {
            let riff_size = u32::try_from(out.len() - 8).unwrap_or(u32::MAX);
            out[4..8].copy_from_slice(&riff_size.to_le_bytes());
        }
        out
    }
}

const VP8X_ICC: u8 = 0x20;
const VP8X_EXIF: u8 = 0x08;
const VP8X_XMP: u8 = 0x04;

/// Checks that the file is one whole image and not also another document, and answers
/// how many of its bytes are the image (the caller keeps only those).
pub fn check(bytes: &[u8], format: AcceptedFormat) -> Result<Checked, ImageRejection> {
    let mut walk = match format {
        AcceptedFormat::Jpeg => walk_jpeg(bytes),
        AcceptedFormat::Png => walk_png(bytes),
        AcceptedFormat::Webp => walk_webp(bytes),
    }?;
    let kept = std::mem::take(&mut walk.kept);
    let image_end = walk.end;
    // Phones append further JPEGs after the first one's end (MPF: the gain map of an
    // Ultra HDR photo, a depth map). Each must be whole and is checked like the first.
    if matches!(format, AcceptedFormat::Jpeg) {
        while bytes[walk.end..].starts_with(&[0xFF, 0xD8]) {
            let base = walk.end;
            let next = walk_jpeg(&bytes[base..])?;
            walk.text.extend(next.text.into_iter().map(|r| r.start + base..r.end + base));
            walk.end = base + next.end;
        }
    }
    let trailer = &bytes[walk.end..];
    if let Some(at) = find_foreign_marker(trailer) {
        return Err(ImageRejection::Polyglot {
            reason: "a web page or document follows the image",
            offset: walk.end + at,
        });
    }
    if let Some(at) = find_zip(trailer) {
        return Err(ImageRejection::Polyglot { reason: "a ZIP archive follows the image", offset: walk.end + at });
    }
    for range in walk.text {
        if let Some(at) = find_foreign_marker(&bytes[range.clone()]) {
            return Err(ImageRejection::Polyglot {
                reason: "the metadata holds markup or a document",
                offset: range.start + at,
            });
        }
    }
    Ok(Checked { format, end: image_end, kept })
}

/// A ZIP archive in a trailer: a local file header where the trailer starts, or the
/// end-of-central-directory record where ZIP readers look for it (the last 64 KiB and
/// 22 bytes of the file).
fn find_zip(trailer: &[u8]) -> Option<usize> {
    if trailer.starts_with(b"PK\x03\x04") {
        return Some(0);
    }
    let from = trailer.len().saturating_sub(65_536 + 22);
    trailer[from..].windows(4).position(|w| w == b"PK\x05\x06").map(|at| from + at)
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
    let mut text = Vec::new();
    // SOI.
    let mut kept = Vec::new();
    kept.push(0..2);
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
            0xD9 => {
                kept.push(i - 2..i);
                return Ok(Walk { end: i, text, kept });
            }
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
        // Text metadata: comments (COM) and XMP packets (APP1 with Adobe's namespace).
        let segment = i + 2..i + length;
        if marker == 0xFE || (marker == 0xE1 && bytes[segment.clone()].starts_with(b"http://ns.adobe.com/xap/1.0/")) {
            text.push(segment.clone());
        }
        // The segment from its marker (fill bytes left out) to its end, and for a scan
        // the entropy-coded data after it.
        let start = i - 2;
        i += length;
        if marker == 0xDA {
            i = skip_entropy_coded_data(bytes, i)?;
        }
        if jpeg_segment_is_kept(marker, &bytes[segment]) {
            kept.push(start..i);
        }
    }
}

/// What a decoder needs: the frame (SOF0–SOF15), Huffman and arithmetic tables, the
/// quantisation tables, the restart interval, the scans and DNL; and Adobe's APP14 of
/// exactly its fixed size, which says whether three components are RGB or YCbCr.
fn jpeg_segment_is_kept(marker: u8, data: &[u8]) -> bool {
    match marker {
        0xC0..=0xCF => marker != 0xC8, // 0xC8 (JPG) is reserved
        0xDA..=0xDD => true,           // SOS, DQT, DNL, DRI
        0xEE => data.len() == 12 && data.starts_with(b"Adobe"),
        _ => false,
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
    let mut text = Vec::new();
    let mut kept = Vec::new();
    kept.push(0..SIGNATURE.len());
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
        // zTXt is compressed (and left unsearched); eXIf is binary.
        if matches!(&kind, b"tEXt" | b"iTXt") {
            text.push(data.clone());
        }
        // The pixels and how to read their colours; every other chunk (text, EXIF,
        // ICC, time, animation, private chunks) is metadata.
        if matches!(&kind, b"IHDR" | b"PLTE" | b"tRNS" | b"IDAT" | b"IEND" | b"gAMA" | b"cHRM" | b"sRGB") {
            kept.push(i..data.end + 4);
        }
        i = data.end + 4;
        if &kind == b"IEND" {
            return Ok(Walk { end: i, text, kept });
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
    let mut text = Vec::new();
    let mut kept = Vec::new();
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
        if &header[0..4] == b"XMP " {
            text.push(data.clone());
        }
        // The bitstreams, their alpha, animation frames and the extended header (whose
        // flags `Checked::stripped` corrects); not ICCP, EXIF, XMP or unknown chunks.
        let padded_end = (data.end + (length & 1)).min(end);
        if matches!(&header[0..4], b"VP8 " | b"VP8L" | b"VP8X" | b"ALPH" | b"ANIM" | b"ANMF") {
            if &header[0..4] == b"VP8X" && length < 10 {
                return Err(malformed("a WebP VP8X chunk is shorter than its fields"));
            }
            kept.push(i..padded_end);
        }
        // Chunks are padded to an even length.
        i = data.end + (length & 1);
    }
    Ok(Walk { end, text, kept })
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
    fn phone_trailers_are_accepted_and_left_out() {
        let image = encoded(ImageFormat::Jpeg);
        let video = [mp4_box(b"ftyp", b"mp42isom"), mp4_box(b"mdat", &[7; 4000])].concat();
        // Samsung-style records: binary headers and names, closed by SEFH ... SEFT.
        let records = [
            &[0x00, 0x00, 0x01, 0x0A, 0x0E, 0x00, 0x00, 0x00][..],
            b"Image_UTC_Data1700000000000",
            b"\x00\x00\x30\x0A\x10\x00\x00\x00MotionPhoto_Data",
            &video,
            b"SEFH\x6b\x00\x00\x00\x02\x00\x00\x00",
            b"\x40\x00\x00\x00SEFT",
        ]
        .concat();
        // A 64-bit box size that would overflow a naive box walk (never parsed here).
        let hostile_sizes =
            [mp4_box(b"ftyp", b""), b"\x00\x00\x00\x01mdat\xff\xff\xff\xff\xff\xff\xff\xf8".to_vec()].concat();
        for trailer in [video.clone(), records, hostile_sizes, vec![0; 16]] {
            let file = [image.clone(), trailer].concat();
            assert_eq!(check(&file, AcceptedFormat::Jpeg).expect("a phone photo").end, image.len());
        }
    }

    #[test]
    fn a_document_after_the_image_is_a_polyglot() {
        let image = encoded(ImageFormat::Png);
        let mut zip_at_the_end = b"some bytes first".to_vec();
        zip_at_the_end.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00");
        for trailer in [zip_at_the_end, b"\n<!DOCTYPE html><p>hi".to_vec(), b"%PDF-1.7 ...".to_vec()] {
            let file = [image.clone(), trailer].concat();
            assert_eq!(check(&file, AcceptedFormat::Png).expect_err("a document").code(), "image_polyglot");
        }
    }

    #[test]
    fn only_text_metadata_is_searched_for_markup() {
        let bytes = encoded(ImageFormat::Jpeg);
        let with_segment = |marker: u8, body: &[u8]| {
            let mut out = bytes[..2].to_vec();
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(&bytes[2..]);
            out
        };
        // EXIF is binary: its thumbnail may spell anything.
        check(&with_segment(0xE1, b"Exif\0\0 binary <svg by chance"), AcceptedFormat::Jpeg).expect("EXIF");
        let xmp = with_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><svg onload=x>");
        assert_eq!(check(&xmp, AcceptedFormat::Jpeg).expect_err("markup").code(), "image_polyglot");
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
