//! Checking and decoding untrusted images.
//!
//! The format is sniffed from the bytes, never taken from a file name or header, and
//! the dimensions are read from the image header before anything is decoded, so a
//! decompression bomb is refused after reading a few bytes.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::config::UploadLimits;

mod container;

/// The formats we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptedFormat {
    Jpeg,
    Png,
    Webp,
}

impl AcceptedFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            AcceptedFormat::Jpeg => "image/jpeg",
            AcceptedFormat::Png => "image/png",
            AcceptedFormat::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            AcceptedFormat::Jpeg => "jpg",
            AcceptedFormat::Png => "png",
            AcceptedFormat::Webp => "webp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            AcceptedFormat::Jpeg => ImageFormat::Jpeg,
            AcceptedFormat::Png => ImageFormat::Png,
            AcceptedFormat::Webp => ImageFormat::WebP,
        }
    }
}

/// Why an image was refused. Each variant has a stable API code.
#[derive(Debug, thiserror::Error)]
pub enum ImageRejection {
    #[error("the file is not a JPEG, PNG or WebP image")]
    UnsupportedFormat,
    #[error("the image is {width}x{height}; at most {max_pixels} pixels and {max_side} pixels a side are accepted")]
    TooManyPixels { width: u32, height: u32, max_pixels: u64, max_side: u32 },
    #[error("the image header cannot be read")]
    UnreadableHeader(#[source] image::ImageError),
    #[error("the image is truncated or corrupt")]
    Corrupt(#[source] image::ImageError),
    #[error("the image is truncated")]
    Truncated,
    #[error("the image's structure is broken: {0}")]
    Malformed(&'static str),
    /// The file is an image and something else: data after the image, or markup or a
    /// document in its metadata.
    #[error("the file is not only an image: {reason} (at byte {offset})")]
    Polyglot { reason: &'static str, offset: usize },
}

impl ImageRejection {
    /// The stable machine-readable code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            ImageRejection::UnsupportedFormat => "unsupported_media_type",
            ImageRejection::TooManyPixels { .. } => "image_too_large",
            ImageRejection::UnreadableHeader(_) => "image_corrupt",
            ImageRejection::Corrupt(_) | ImageRejection::Malformed(_) => "image_corrupt",
            ImageRejection::Truncated => "image_truncated",
            ImageRejection::Polyglot { .. } => "image_polyglot",
        }
    }
}

/// What a successful inspection learnt about an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: AcceptedFormat,
    pub width: u32,
    pub height: u32,
}

/// Recognises the format from the magic bytes.
pub fn sniff_format(bytes: &[u8]) -> Option<AcceptedFormat> {
    match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Some(AcceptedFormat::Jpeg),
        ImageFormat::Png => Some(AcceptedFormat::Png),
        ImageFormat::WebP => Some(AcceptedFormat::Webp),
        _ => None,
    }
}

/// Sniffs the format and checks the declared dimensions, without decoding pixels.
pub fn inspect(bytes: &[u8], limits: &UploadLimits) -> Result<ImageInfo, ImageRejection> {
    let format = sniff_format(bytes).ok_or(ImageRejection::UnsupportedFormat)?;
    let reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    let (width, height) = reader.into_dimensions().map_err(ImageRejection::UnreadableHeader)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels || width > limits.max_side || height > limits.max_side || pixels == 0 {
        return Err(ImageRejection::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(ImageInfo { format, width, height })
}

/// Decodes a checked image under a memory limit, honouring its EXIF orientation.
/// CPU-heavy: call it from a blocking thread.
pub fn decode(bytes: &[u8], info: &ImageInfo) -> Result<DynamicImage, ImageRejection> {
    decode_with_length(bytes, info).map(|(image, _)| image)
}

/// `decode`, also answering how many leading bytes of the file are its image: what
/// follows (zero padding, a phone's motion-photo video or records) is not kept.
pub fn decode_with_length(bytes: &[u8], info: &ImageInfo) -> Result<(DynamicImage, usize), ImageRejection> {
    let image_length = container::check(bytes, info.format)?;
    let bytes = &bytes[..image_length];
    let mut reader = ImageReader::with_format(Cursor::new(bytes), info.format.image_format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(info.width);
    limits.max_image_height = Some(info.height);
    // Four bytes a pixel for the decoded image plus the decoder's own buffers.
    limits.max_alloc = Some(u64::from(info.width) * u64::from(info.height) * 4 * 2 + (16 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(ImageRejection::Corrupt)?;
    let orientation = decoder.orientation().map_err(ImageRejection::Corrupt)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(ImageRejection::Corrupt)?;
    image.apply_orientation(orientation);
    Ok((image, image_length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> UploadLimits {
        UploadLimits { max_bytes: 1 << 20, max_pixels: 1_000_000, max_side: 2_000 }
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).expect("encode");
        out
    }

    #[test]
    fn accepts_a_real_png_and_reads_its_size() {
        let bytes = png(40, 30);
        let info = inspect(&bytes, &limits()).expect("accepted");
        assert_eq!((info.format, info.width, info.height), (AcceptedFormat::Png, 40, 30));
        let decoded = decode(&bytes, &info).expect("decodes");
        assert_eq!((decoded.width(), decoded.height()), (40, 30));
    }

    #[test]
    fn refuses_text_and_gif() {
        assert_eq!(inspect(b"hello, this is text", &limits()).unwrap_err().code(), "unsupported_media_type");
        assert_eq!(inspect(b"GIF89a\x01\x00\x01\x00", &limits()).unwrap_err().code(), "unsupported_media_type");
    }

    #[test]
    fn refuses_too_many_pixels_from_the_header() {
        let err = inspect(&png(1_500, 1_000), &limits()).unwrap_err();
        assert_eq!(err.code(), "image_too_large");
    }

    #[test]
    fn a_truncated_jpeg_is_refused() {
        let img = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg).expect("encode");
        let info = inspect(&bytes, &limits()).expect("accepted");
        assert!(decode(&bytes, &info).is_ok());
        let cut = &bytes[..bytes.len() - 100];
        assert_eq!(decode(cut, &info).unwrap_err().code(), "image_truncated");
    }

    #[test]
    fn a_truncated_image_fails_to_decode() {
        let bytes = png(64, 64);
        let cut = &bytes[..bytes.len() / 2];
        let info = inspect(cut, &limits()).expect("header is intact");
        assert_eq!(decode(cut, &info).unwrap_err().code(), "image_truncated");
    }
}
