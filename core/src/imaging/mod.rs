//! Checking and decoding untrusted images.
//!
//! The format is sniffed from the bytes, never taken from a file name or header, and
//! the dimensions are read from the image header before anything is decoded, so a
//! decompression bomb is refused after reading a few bytes. Decodes reserve their memory
//! from the process's budget first (`decode.rs` says what each holds) and produce the
//! size that is needed, not the file's. What is stored keeps only the pixels' container
//! (`container.rs`); the orientation is recorded beside it.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};

use crate::config::UploadLimits;
use crate::memory::{MemoryBudget, OverBudget};

mod container;
mod decode;
mod shrink;

pub use decode::{DecodePlan, Target, orientation};
pub use image::metadata::Orientation;
pub use shrink::fit_within;

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
    /// Decoding it would need more memory than this process may use at all.
    #[error("decoding the image needs more memory than the server allows")]
    OverBudget(#[from] OverBudget),
}

impl ImageRejection {
    /// The stable machine-readable code of the API.
    pub fn code(&self) -> &'static str {
        match self {
            ImageRejection::UnsupportedFormat => "unsupported_media_type",
            ImageRejection::TooManyPixels { .. } | ImageRejection::OverBudget(_) => "image_too_large",
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

/// An upload made ready to store: its bytes without metadata, verified whole, and
/// the orientation its EXIF gave (the stored bytes no longer carry it).
#[derive(Debug)]
pub struct PreparedUpload {
    pub info: ImageInfo,
    pub stored: Vec<u8>,
    pub orientation: Orientation,
    /// The upright picture's size, after the orientation.
    pub width: u32,
    pub height: u32,
}

/// Checks an upload whole (container, then every pixel) within the memory budget and
/// strips its metadata. CPU-heavy: call it from a blocking thread.
pub fn prepare_upload(
    bytes: &[u8],
    limits: &UploadLimits,
    budget: &MemoryBudget,
) -> Result<PreparedUpload, ImageRejection> {
    let info = inspect(bytes, limits)?;
    let checked = container::check(bytes, info.format)?;
    let original = &bytes[..checked.end];
    let orientation = orientation(original, &info)?;
    let plan = DecodePlan::new(original, &info, Target::Verify)?;
    // The stripped copy and the decode that proves it whole.
    let _held = budget.reserve_blocking(checked.end as u64 + plan.peak_bytes())?;
    let stored = checked.stripped(bytes);
    plan.run(&stored)?;
    let (width, height) = upright_size(info.width, info.height, orientation);
    Ok(PreparedUpload { info, stored, orientation, width, height })
}

/// The size of a picture of `width × height` once `orientation` is applied.
pub fn upright_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH => {
            (height, width)
        }
        _ => (width, height),
    }
}

/// `image` turned upright.
pub fn apply_orientation(image: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return image;
    }
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation);
    image.into_rgb8()
}

#[cfg(test)]
mod tests;
