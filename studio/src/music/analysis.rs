//! What the composer reads from the photo: light, colour, contrast, texture, and a coarse
//! map of where it is light or dark that the melody follows.

use image::RgbImage;

/// Horizontal bands of the photo; each phrase of the melody reads one, left to right.
pub(super) const BANDS: usize = 4;
/// Cells per band: one per eighth note of a four-bar phrase.
pub(super) const COLUMNS: usize = 32;
/// Bars per phrase (one texture value per bar of a band).
pub(super) const PHRASE_BARS: usize = 4;

/// Mean luminance difference between neighbouring pixels that counts as fully textured.
const FULL_TEXTURE: f32 = 0.07;
/// Mean chroma that counts as fully colourful.
const FULL_CHROMA: f32 = 0.6;
/// Standard deviation of luminance that counts as full contrast.
const FULL_CONTRAST: f32 = 0.28;

#[derive(Clone, Debug)]
pub(super) struct Features {
    /// Mean luminance, 0 (black) to 1 (white).
    pub brightness: f32,
    /// Spread of luminance, 0 (flat) to 1 (strong contrast).
    pub contrast: f32,
    /// Colourfulness: mean chroma (HSV saturation times value, so a deep navy counts as
    /// dark rather than vivid), 0 (grey) to 1 (vivid).
    pub saturation: f32,
    /// 0 for blue-cyan, 1 for red-orange, 0.5 for green, magenta or grey; weighted by chroma.
    pub warmth: f32,
    /// The most common hue in degrees (a multiple of 30), if the photo has colour at all.
    pub hue: Option<f32>,
    /// Fine detail (fur, grass, patterns), 0 (smooth) to 1 (busy).
    pub texture: f32,
    /// Hash of the pixels: the seed of every choice that is not read from the photo.
    pub seed: u64,
    /// Mean luminance of each cell of a `BANDS` × `COLUMNS` grid, stretched over the
    /// photo's own range so that a dim photo still has a melodic contour.
    pub contour: [[f32; COLUMNS]; BANDS],
    /// Texture of each bar-wide block of a band, 0 to 1: how busy that bar's rhythm is.
    pub busyness: [[f32; PHRASE_BARS]; BANDS],
}

pub(super) fn analyse(photo: &RgbImage) -> Features {
    let (w, h) = photo.dimensions();
    let mut seed = Fnv::new();
    seed.write(&w.to_le_bytes());
    seed.write(&h.to_le_bytes());
    seed.write(photo.as_raw());
    let seed = seed.0;
    if w == 0 || h == 0 {
        return Features {
            brightness: 0.5,
            contrast: 0.0,
            saturation: 0.0,
            warmth: 0.5,
            hue: None,
            texture: 0.0,
            seed,
            contour: [[0.5; COLUMNS]; BANDS],
            busyness: [[0.0; PHRASE_BARS]; BANDS],
        };
    }

    let (mut luma_sum, mut luma_sq, mut sat_sum, mut grad_sum) = (0f64, 0f64, 0f64, 0f64);
    let (mut chroma_sum, mut warm_sum) = (0f64, 0f64);
    let mut hues = [0f64; 12];
    let mut cell_luma = [[0f64; COLUMNS]; BANDS];
    let mut cell_grad = [[0f64; COLUMNS]; BANDS];
    let mut cell_count = [[0u32; COLUMNS]; BANDS];
    let mut above = vec![0f32; w as usize];
    let warm_axis = 30f32.to_radians();
    for y in 0..h {
        let band = (y as usize * BANDS) / h as usize;
        let mut left = 0f32;
        for x in 0..w {
            let p = photo.get_pixel(x, y);
            let [r, g, b] = p.0.map(|c| f32::from(c) / 255.0);
            let l = 0.299 * r + 0.587 * g + 0.114 * b;
            let max = r.max(g).max(b);
            let chroma = max - r.min(g).min(b);
            // Opponent-colour axes: their angle is the hue, their length about the chroma.
            let (a, bb) = (r - 0.5 * (g + b), 0.866 * (g - b));
            if chroma > 0.02 {
                let hue = bb.atan2(a);
                let deg = hue.to_degrees().rem_euclid(360.0);
                hues[((deg + 15.0) / 30.0) as usize % 12] += f64::from(chroma);
                chroma_sum += f64::from(chroma);
                warm_sum += f64::from(chroma * (hue - warm_axis).cos());
            }
            let grad =
                if x > 0 { (l - left).abs() } else { 0.0 } + if y > 0 { (l - above[x as usize]).abs() } else { 0.0 };
            left = l;
            above[x as usize] = l;
            luma_sum += f64::from(l);
            luma_sq += f64::from(l * l);
            sat_sum += f64::from(chroma);
            grad_sum += f64::from(grad);
            let col = (x as usize * COLUMNS) / w as usize;
            cell_luma[band][col] += f64::from(l);
            cell_grad[band][col] += f64::from(grad);
            cell_count[band][col] += 1;
        }
    }
    let n = f64::from(w) * f64::from(h);
    let brightness = luma_sum / n;
    let spread = (luma_sq / n - brightness * brightness).max(0.0).sqrt();
    let hue = (chroma_sum / n > 0.03)
        .then(|| hues.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0.0, |(i, _)| i as f32 * 30.0));
    let warmth = if chroma_sum > 0.0 { 0.5 + 0.5 * warm_sum / chroma_sum } else { 0.5 };

    // Cells the photo is too small to fill borrow their left neighbour.
    let mut contour = [[0f32; COLUMNS]; BANDS];
    let mut busy = [[0f32; COLUMNS]; BANDS];
    for band in 0..BANDS {
        for col in 0..COLUMNS {
            let count = cell_count[band][col];
            if count > 0 {
                contour[band][col] = (cell_luma[band][col] / f64::from(count)) as f32;
                busy[band][col] = (cell_grad[band][col] / f64::from(count)) as f32;
            } else if col > 0 {
                (contour[band][col], busy[band][col]) = (contour[band][col - 1], busy[band][col - 1]);
            } else if band > 0 {
                (contour[band][col], busy[band][col]) = (contour[band - 1][col], busy[band - 1][col]);
            } else {
                contour[band][col] = brightness as f32;
            }
        }
    }
    let (lo, hi) = contour.iter().flatten().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (mid, range) = ((lo + hi) / 2.0, (hi - lo).max(0.04));
    for v in contour.iter_mut().flatten() {
        *v = ((*v - mid) / range + 0.5).clamp(0.0, 1.0);
    }
    let mut busyness = [[0f32; PHRASE_BARS]; BANDS];
    let per_bar = COLUMNS / PHRASE_BARS;
    for band in 0..BANDS {
        for bar in 0..PHRASE_BARS {
            let cells = &busy[band][bar * per_bar..(bar + 1) * per_bar];
            busyness[band][bar] = (cells.iter().sum::<f32>() / per_bar as f32 / FULL_TEXTURE).clamp(0.0, 1.0);
        }
    }

    Features {
        brightness: brightness as f32,
        contrast: (spread as f32 / FULL_CONTRAST).clamp(0.0, 1.0),
        saturation: ((sat_sum / n) as f32 / FULL_CHROMA).clamp(0.0, 1.0),
        warmth: warmth as f32,
        hue,
        texture: ((grad_sum / n) as f32 / FULL_TEXTURE).clamp(0.0, 1.0),
        seed,
        contour,
        busyness,
    }
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
