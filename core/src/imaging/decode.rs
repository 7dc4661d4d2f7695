//! Decoding an accepted image within a memory cost known before anything is allocated,
//! at the size it is needed:
//!
//! - JPEG (grey or colour): `jpeg-decoder` with DCT scaling, 1/2, 1/4 or 1/8 of the size
//!   during decoding; every coefficient is still read, so a corrupt file is still found.
//! - PNG (not interlaced): rows stream out of `png`, 16 bits reduced to 8, and are
//!   averaged in boxes as they come (`shrink.rs`); only a few rows exist at full width.
//! - Everything else (WebP, interlaced PNG, CMYK or 16-bit JPEG): decoded whole by
//!   `image`, under a limit equal to the cost reserved for it.
//!
//! A `DecodePlan` reads only headers: its `peak_bytes` is what the caller reserves from
//! the memory budget before `run` allocates.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use super::shrink::{BoxShrinker, box_factor, fit_rgb, fit_within};
use super::{AcceptedFormat, ImageInfo, ImageRejection};

/// What the decode is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every pixel read to prove the file whole; nothing kept.
    Verify,
    /// An RGB picture no larger than this on its longest side.
    Fit { max_side: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `jpeg-decoder` at a scaled size (1, 1/2, 1/4 or 1/8).
    ScaledJpeg { scaled: (u32, u32), components: u64, progressive: bool },
    /// Rows of `png`, box-averaged by `factor`.
    StreamedPng { row_bytes: u64, factor: u32 },
    /// `image`'s decoder, the whole picture at once.
    Whole { decoded_bytes: u64 },
}

/// How an image will be decoded and what that will hold at most.
#[derive(Clone, Copy, Debug)]
pub struct DecodePlan {
    info: ImageInfo,
    target: Target,
    route: Route,
}

/// Room for a decoder's tables, Huffman state, zlib window and the like.
const DECODER_OVERHEAD: u64 = 4 << 20;

impl DecodePlan {
    /// Reads the headers of `bytes` (an image `inspect` accepted) and chooses a route.
    pub fn new(bytes: &[u8], info: &ImageInfo, target: Target) -> Result<DecodePlan, ImageRejection> {
        let route = match info.format {
            AcceptedFormat::Jpeg => jpeg_route(bytes, info, target)?,
            AcceptedFormat::Png => png_route(bytes, info, target)?,
            AcceptedFormat::Webp => None,
        };
        let route = match route {
            Some(route) => route,
            None => Route::Whole { decoded_bytes: whole_decoder(bytes, info, None)?.total_bytes() },
        };
        Ok(DecodePlan { info: *info, target, route })
    }

    /// The most this decode holds at once, the result included.
    pub fn peak_bytes(&self) -> u64 {
        let (width, height) = (u64::from(self.info.width), u64::from(self.info.height));
        // The resized copy at the target size.
        let resized = match self.target {
            Target::Verify => 0,
            Target::Fit { max_side } => {
                let (w, h) = fit_within(self.info.width, self.info.height, max_side);
                u64::from(w) * u64::from(h) * 3
            }
        };
        let rgb = |w: u64, h: u64| if self.target == Target::Verify { 0 } else { w * h * 3 };
        DECODER_OVERHEAD
            + match self.route {
                Route::ScaledJpeg { scaled: (w, h), components, progressive } => {
                    let (w, h) = (u64::from(w), u64::from(h));
                    // Component planes and the interleaved output, both at the scaled size;
                    // a progressive file also keeps every coefficient (2 bytes each) of the
                    // full-size picture until its last scan.
                    let coefficients = if progressive { (width + 15) * (height + 15) * components * 2 } else { 0 };
                    (w + 15) * (h + 15) * components * 2 + coefficients + rgb(w, h) + resized
                }
                Route::StreamedPng { row_bytes, factor } => {
                    let shrunk = match self.target {
                        Target::Verify => 0,
                        Target::Fit { .. } => BoxShrinker::peak_bytes(self.info.width, self.info.height, factor),
                    };
                    row_bytes * 4 + shrunk + resized
                }
                // The decoded picture, the decoder's own planes (as large again at most),
                // its RGB copy.
                Route::Whole { decoded_bytes } => decoded_bytes * 2 + rgb(width, height) + resized,
            }
    }

    /// Decodes every pixel. With `Target::Verify` the answer is an empty picture.
    pub fn run(&self, bytes: &[u8]) -> Result<RgbImage, ImageRejection> {
        let max_side = match self.target {
            Target::Verify => None,
            Target::Fit { max_side } => Some(max_side),
        };
        let decoded = match self.route {
            Route::ScaledJpeg { .. } => scaled_jpeg(bytes, &self.info, self.target)?,
            Route::StreamedPng { factor, .. } => streamed_png(bytes, factor, max_side.is_none())?,
            Route::Whole { .. } => {
                // The limit bounds the decoder's own allocations; the picture it fills
                // (which `image` does not count against it) is part of the reservation.
                let decoder = whole_decoder(bytes, &self.info, Some(self.peak_bytes()))?;
                let image = DynamicImage::from_decoder(decoder).map_err(ImageRejection::Corrupt)?;
                if max_side.is_none() { RgbImage::new(0, 0) } else { image.to_rgb8() }
            }
        };
        Ok(match max_side {
            Some(max_side) => fit_rgb(decoded, max_side),
            None => RgbImage::new(0, 0),
        })
    }
}

/// The EXIF orientation of a file, from its headers.
pub fn orientation(bytes: &[u8], info: &ImageInfo) -> Result<Orientation, ImageRejection> {
    whole_decoder(bytes, info, None)?.orientation().map_err(ImageRejection::Corrupt)
}

/// `image`'s decoder for the file, with its allocation limit.
fn whole_decoder<'a>(
    bytes: &'a [u8],
    info: &ImageInfo,
    max_alloc: Option<u64>,
) -> Result<Box<dyn ImageDecoder + 'a>, ImageRejection> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), info.format.image_format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(info.width);
    limits.max_image_height = Some(info.height);
    limits.max_alloc = max_alloc;
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(ImageRejection::Corrupt)?;
    Ok(Box::new(decoder))
}

fn jpeg_error(error: jpeg_decoder::Error) -> ImageRejection {
    ImageRejection::Corrupt(image::ImageError::Decoding(image::error::DecodingError::new(
        image::error::ImageFormatHint::Exact(image::ImageFormat::Jpeg),
        error,
    )))
}

/// `jpeg-decoder` answers some hostile headers with a panic (a frame of two components);
/// such a file is corrupt, not a fault of ours.
fn catching_panics<T>(work: impl FnOnce() -> Result<T, ImageRejection>) -> Result<T, ImageRejection> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        .unwrap_or(Err(ImageRejection::Malformed("the JPEG decoder refused the file's structure")))
}

/// The side `jpeg-decoder` is asked for: the smallest scale whose longest side still
/// covers the target (for `Verify`, 1/8).
fn jpeg_request(info: &ImageInfo, target: Target) -> (u16, u16) {
    match target {
        Target::Verify => (1, 1),
        Target::Fit { max_side } => {
            let side = u16::try_from(max_side.min(info.width.max(info.height))).unwrap_or(u16::MAX);
            (side, side)
        }
    }
}

fn jpeg_route(bytes: &[u8], info: &ImageInfo, target: Target) -> Result<Option<Route>, ImageRejection> {
    catching_panics(|| {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        decoder.read_info().map_err(jpeg_error)?;
        let header = decoder.info().ok_or(ImageRejection::Malformed("a JPEG without a frame header"))?;
        let components = match header.pixel_format {
            jpeg_decoder::PixelFormat::L8 => 1,
            jpeg_decoder::PixelFormat::RGB24 => 3,
            // Rare: left to `image`, which converts them.
            jpeg_decoder::PixelFormat::L16 | jpeg_decoder::PixelFormat::CMYK32 => return Ok(None),
        };
        let progressive = match header.coding_process {
            jpeg_decoder::CodingProcess::DctSequential => false,
            jpeg_decoder::CodingProcess::DctProgressive => true,
            jpeg_decoder::CodingProcess::Lossless => return Ok(None),
        };
        let (request_w, request_h) = jpeg_request(info, target);
        let (w, h) = decoder.scale(request_w, request_h).map_err(jpeg_error)?;
        Ok(Some(Route::ScaledJpeg { scaled: (u32::from(w), u32::from(h)), components, progressive }))
    })
}

fn scaled_jpeg(bytes: &[u8], info: &ImageInfo, target: Target) -> Result<RgbImage, ImageRejection> {
    catching_panics(|| {
        let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(bytes));
        let (request_w, request_h) = jpeg_request(info, target);
        let (w, h) = decoder.scale(request_w, request_h).map_err(jpeg_error)?;
        let pixels = decoder.decode().map_err(jpeg_error)?;
        let (w, h) = (u32::from(w), u32::from(h));
        let format = decoder.info().map(|i| i.pixel_format);
        let image = match format {
            Some(jpeg_decoder::PixelFormat::RGB24) => RgbImage::from_raw(w, h, pixels),
            Some(jpeg_decoder::PixelFormat::L8) => {
                image::GrayImage::from_raw(w, h, pixels).map(|grey| DynamicImage::ImageLuma8(grey).to_rgb8())
            }
            _ => None,
        };
        image.ok_or(ImageRejection::Malformed("the JPEG decoded to an unexpected size or format"))
    })
}

fn png_decoder(bytes: &[u8]) -> Result<png::Reader<Cursor<&[u8]>>, ImageRejection> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Every row reaches us as 8-bit grey, grey + alpha, RGB or RGBA.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder.read_info().map_err(png_error)
}

fn png_error(error: png::DecodingError) -> ImageRejection {
    match error {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => ImageRejection::Truncated,
        error => ImageRejection::Corrupt(image::ImageError::Decoding(image::error::DecodingError::new(
            image::error::ImageFormatHint::Exact(image::ImageFormat::Png),
            error,
        ))),
    }
}

fn png_route(bytes: &[u8], info: &ImageInfo, target: Target) -> Result<Option<Route>, ImageRejection> {
    let reader = png_decoder(bytes)?;
    let interlaced = reader.info().interlaced;
    // Interlaced rows arrive in seven passes, not top to bottom: only a verify streams them.
    if interlaced && target != Target::Verify {
        return Ok(None);
    }
    // The raw row (up to 8 bytes a pixel at 16-bit RGBA) and the decoder's previous row.
    let row_bytes = u64::from(info.width) * 8 + 64;
    let factor = match target {
        Target::Verify => 1,
        Target::Fit { max_side } => box_factor(info.width, info.height, max_side),
    };
    Ok(Some(Route::StreamedPng { row_bytes, factor }))
}

fn streamed_png(bytes: &[u8], factor: u32, verify_only: bool) -> Result<RgbImage, ImageRejection> {
    let mut reader = png_decoder(bytes)?;
    let (width, height) = (reader.info().width, reader.info().height);
    let channels = reader.output_color_type().0.samples();
    let mut shrinker = (!verify_only).then(|| BoxShrinker::new(width, height, factor));
    while let Some(row) = reader.next_row().map_err(png_error)? {
        if let Some(shrinker) = shrinker.as_mut() {
            shrinker.push_row(row.data(), channels);
        }
    }
    reader.finish().map_err(png_error)?;
    Ok(shrinker.map_or_else(|| RgbImage::new(0, 0), BoxShrinker::finish))
}
