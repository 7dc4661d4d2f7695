//! The checks, the stripping and the decodes, judged by readers we did not write: the
//! `image` crate's decoders (zune-jpeg, png, image-webp) and the `png` crate's metadata.

use std::io::Cursor;

use image::{ImageDecoder, ImageFormat, RgbImage};

use super::*;

fn limits() -> UploadLimits {
    UploadLimits { max_bytes: 1 << 20, max_pixels: 1_000_000, max_side: 2_000 }
}

fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8]))
}

fn encoded(image: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    image.write_to(&mut Cursor::new(&mut out), format).expect("encode");
    out
}

fn prepare(bytes: &[u8]) -> Result<PreparedUpload, ImageRejection> {
    prepare_upload(bytes, &limits(), &MemoryBudget::unlimited())
}

/// A big-endian TIFF block as EXIF carries it: orientation 6 and a description that
/// stands for what must never be stored (GPS position, camera serial).
fn exif_tiff() -> Vec<u8> {
    let secret = b"GPS 51.5007N 0.1246W serial CAM-0042\0";
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x02".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    tiff.extend_from_slice(&[0x01, 0x0E, 0, 2]);
    tiff.extend_from_slice(&(secret.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&38u32.to_be_bytes());
    tiff.extend_from_slice(&[0; 4]);
    tiff.extend_from_slice(secret);
    tiff
}

const SECRET: &[u8] = b"CAM-0042";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn jpeg_segment(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF, marker];
    out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn same_pixels(a: &[u8], b: &[u8]) {
    let a = image::load_from_memory(a).expect("original decodes").to_rgb8();
    let b = image::load_from_memory(b).expect("stored decodes").to_rgb8();
    assert_eq!(a.dimensions(), b.dimensions());
    assert!(a.as_raw() == b.as_raw(), "stripping must not change a pixel");
}

#[test]
fn accepts_a_real_png_and_reads_its_size() {
    let bytes = encoded(&picture(40, 30), ImageFormat::Png);
    let prepared = prepare(&bytes).expect("accepted");
    assert_eq!((prepared.info.format, prepared.width, prepared.height), (AcceptedFormat::Png, 40, 30));
    assert_eq!(prepared.orientation, Orientation::NoTransforms);
    same_pixels(&bytes, &prepared.stored);
}

#[test]
fn refuses_text_and_gif() {
    assert_eq!(inspect(b"hello, this is text", &limits()).unwrap_err().code(), "unsupported_media_type");
    assert_eq!(inspect(b"GIF89a\x01\x00\x01\x00", &limits()).unwrap_err().code(), "unsupported_media_type");
}

#[test]
fn refuses_too_many_pixels_from_the_header() {
    let err = inspect(&encoded(&picture(1_500, 1_000), ImageFormat::Png), &limits()).unwrap_err();
    assert_eq!(err.code(), "image_too_large");
}

#[test]
fn a_truncated_image_is_refused() {
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
        let bytes = encoded(&picture(64, 64), format);
        prepare(&bytes).expect("whole");
        for cut in [bytes.len() - 100, bytes.len() / 2] {
            let err = prepare(&bytes[..cut]).expect_err("cut");
            assert_eq!(err.code(), "image_truncated", "{format:?} cut at {cut}: {err}");
        }
    }
}

#[test]
fn corrupt_scan_data_is_refused_though_the_structure_is_whole() {
    // A PNG whose pixel data is damaged keeps its chunk structure, but not its CRC.
    let mut bytes = encoded(&picture(64, 64), ImageFormat::Png);
    let idat = bytes.windows(4).position(|w| w == b"IDAT").expect("IDAT");
    bytes[idat + 20] ^= 0x55;
    assert_eq!(prepare(&bytes).expect_err("corrupt").code(), "image_corrupt");
}

#[test]
fn a_jpeg_keeps_only_what_its_pixels_need_and_its_orientation_is_recorded() {
    let plain = encoded(&picture(64, 48), ImageFormat::Jpeg);
    let exif = [b"Exif\0\0".as_slice(), &exif_tiff()].concat();
    let metadata = [
        jpeg_segment(0xE1, &exif),
        jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>CAM-0042</x:xmpmeta>"),
        jpeg_segment(0xFE, b"taken with CAM-0042"),
        jpeg_segment(0xE2, b"ICC_PROFILE\0\x01\x01 CAM-0042 not really a profile"),
        jpeg_segment(0xEF, b"a vendor's private CAM-0042 segment"),
    ]
    .concat();
    let file = [&plain[..2], &metadata, &plain[2..]].concat();
    let prepared = prepare(&file).expect("accepted");
    assert_eq!(prepared.orientation, Orientation::Rotate90);
    assert_eq!((prepared.width, prepared.height), (48, 64), "upright: EXIF 6 turns it a quarter");
    assert!(!contains(&prepared.stored, SECRET), "no metadata is stored");
    assert!(prepared.stored.len() < plain.len(), "the encoder's own JFIF header goes too");
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(&prepared.stored)).expect("a JPEG");
    assert_eq!(decoder.exif_metadata().expect("read"), None);
    assert_eq!(decoder.icc_profile().expect("read"), None);
    assert_eq!(decoder.orientation().expect("read"), Orientation::NoTransforms);
    same_pixels(&file, &prepared.stored);
}

#[test]
fn a_png_keeps_only_what_its_pixels_need() {
    let image = picture(40, 30);
    let mut file = Vec::new();
    let mut encoder = png::Encoder::new(&mut file, 40, 30);
    encoder.set_color(png::ColorType::Rgb);
    encoder.add_text_chunk("Comment".into(), "CAM-0042".into()).expect("tEXt");
    encoder.add_ztxt_chunk("Comment".into(), "zipped CAM-0042".into()).expect("zTXt");
    let mut writer = encoder.write_header().expect("header");
    writer.write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif_tiff()).expect("eXIf");
    writer.write_chunk(png::chunk::ChunkType(*b"prVt"), b"private CAM-0042").expect("private");
    writer.write_image_data(image.as_raw()).expect("pixels");
    writer.finish().expect("finish");

    let prepared = prepare(&file).expect("accepted");
    assert_eq!(prepared.orientation, Orientation::Rotate90);
    assert!(!contains(&prepared.stored, SECRET), "no text, EXIF or private chunk is stored");
    let reader = png::Decoder::new(Cursor::new(&prepared.stored)).read_info().expect("a PNG");
    let info = reader.info();
    assert!(info.exif_metadata.is_none() && info.uncompressed_latin1_text.is_empty());
    assert!(info.compressed_latin1_text.is_empty() && info.icc_profile.is_none());
    same_pixels(&file, &prepared.stored);
}

/// A RIFF chunk: tag, little-endian length, body, padding to even.
fn riff_chunk(tag: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    out
}

#[test]
fn a_webp_keeps_only_its_bitstream() {
    let simple = encoded(&picture(40, 30), ImageFormat::WebP);
    let bitstream = &simple[12..];
    // The extended form: VP8X announcing ICC, EXIF and XMP, then those chunks.
    let mut vp8x = vec![0x20 | 0x08 | 0x04, 0, 0, 0];
    vp8x.extend_from_slice(&39u32.to_le_bytes()[..3]);
    vp8x.extend_from_slice(&29u32.to_le_bytes()[..3]);
    let chunks = [
        riff_chunk(b"VP8X", &vp8x),
        riff_chunk(b"ICCP", b"CAM-0042 not a profile"),
        bitstream.to_vec(),
        riff_chunk(b"EXIF", &exif_tiff()),
        riff_chunk(b"XMP ", b"<x:xmpmeta>CAM-0042</x:xmpmeta>"),
        riff_chunk(b"prVt", b"CAM-0042"),
    ]
    .concat();
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
    file.extend_from_slice(b"WEBP");
    file.extend_from_slice(&chunks);

    let prepared = prepare(&file).expect("accepted");
    assert_eq!(prepared.orientation, Orientation::Rotate90);
    assert!(!contains(&prepared.stored, SECRET));
    let mut decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(&prepared.stored)).expect("a WebP");
    assert_eq!(decoder.exif_metadata().expect("read"), None);
    assert_eq!(decoder.icc_profile().expect("read"), None);
    same_pixels(&file, &prepared.stored);
}

/// A 16-bit RGB PNG with EXIF orientation 6, like the memory benchmark's.
fn png16(width: u32, height: u32) -> Vec<u8> {
    let mut file = Vec::new();
    let mut encoder = png::Encoder::new(&mut file, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().expect("header");
    writer.write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif_tiff()).expect("eXIf");
    let mut data = Vec::with_capacity(width as usize * height as usize * 6);
    for y in 0..height {
        for x in 0..width {
            for value in [x * 65_535 / width, y * 65_535 / height, 20_000] {
                data.extend_from_slice(&(value as u16).to_be_bytes());
            }
        }
    }
    writer.write_image_data(&data).expect("pixels");
    writer.finish().expect("finish");
    file
}

fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    total as f64 / a.as_raw().len() as f64
}

#[test]
fn a_fitted_decode_matches_a_full_decode_resized() {
    for (bytes, name) in [
        (png16(900, 600), "16-bit PNG"),
        (encoded(&picture(900, 600), ImageFormat::Jpeg), "JPEG"),
        (encoded(&picture(900, 600), ImageFormat::WebP), "WebP"),
    ] {
        let info = inspect(&bytes, &limits()).expect("accepted");
        let plan = DecodePlan::new(&bytes, &info, Target::Fit { max_side: 200 }).expect("plan");
        let fitted = plan.run(&bytes).expect("decodes");
        assert_eq!(fitted.dimensions(), (200, 133), "{name}");
        let reference = image::load_from_memory(&bytes)
            .expect("decodes")
            .resize(200, 200, image::imageops::FilterType::Triangle)
            .to_rgb8();
        let diff = mean_abs_diff(&fitted, &reference);
        assert!(diff < 3.0, "{name}: mean difference {diff:.2} from image's own decode and resize");
    }
}

#[test]
fn a_large_16_bit_png_is_fitted_holding_a_small_part_of_its_size() {
    let bytes = png16(3_000, 2_000);
    let limits = UploadLimits { max_bytes: 1 << 30, max_pixels: 10_000_000, max_side: 4_000 };
    let info = inspect(&bytes, &limits).expect("accepted");
    let full_decode = 3_000 * 2_000 * 6;
    let plan = DecodePlan::new(&bytes, &info, Target::Fit { max_side: 1_024 }).expect("plan");
    assert!(plan.peak_bytes() < full_decode / 3, "{} bytes", plan.peak_bytes());
    let verify = DecodePlan::new(&bytes, &info, Target::Verify).expect("plan");
    assert!(verify.peak_bytes() < 8 << 20, "a verify holds rows only: {} bytes", verify.peak_bytes());
    let fitted = plan.run(&bytes).expect("decodes");
    assert_eq!(fitted.dimensions(), (1_024, 683));
    let upright = apply_orientation(fitted, orientation(&bytes, &info).expect("orientation"));
    assert_eq!(upright.dimensions(), (683, 1_024));
}

#[test]
fn a_decode_larger_than_the_whole_budget_is_refused_before_it_starts() {
    let bytes = encoded(&picture(600, 400), ImageFormat::WebP);
    let err = prepare_upload(&bytes, &limits(), &MemoryBudget::new(1 << 20)).expect_err("over budget");
    assert_eq!(err.code(), "image_too_large", "{err}");
    prepare_upload(&bytes, &limits(), &MemoryBudget::new(64 << 20)).expect("within the budget");
}
