//! Which pixels are the subject, from the image alone (no model).
//!
//! The border of a pet photo is mostly background, so its colours (a few clusters
//! found by k-means in CIELAB, robust to the subject reaching into the border) are the
//! background's model. A pixel is likely subject when its colour is far from every
//! background cluster (relative to that cluster's own spread), when its texture differs
//! from the border's, and when it is near the centre. Otsu's threshold splits that
//! score; the result is cleaned (specks removed, the component at the centre kept,
//! gaps closed, holes filled) and its edge softened. When the split is weak or the
//! region implausible (a subject that fills the frame), a centred oval stands in.

use image::RgbImage;

use super::field::{blur, distance};

/// The estimated subject of a photo, one value per pixel.
pub(super) struct Foreground {
    pub width: usize,
    pub height: usize,
    /// 1 on the subject, 0 on the background, soft in between at its edge.
    pub mask: Vec<f32>,
    /// True when the subject could not be told from the background and the centred
    /// oval was used instead.
    pub fallback: bool,
}

#[cfg(test)]
impl Foreground {
    pub fn contains(&self, x: usize, y: usize) -> bool {
        self.mask[y * self.width + x] > 0.5
    }
}

/// The most background clusters looked for among the border's colours.
const CLUSTERS: usize = 4;
/// A border cluster holding less than this share of the border's weight is taken to
/// be the subject reaching into it, not background.
const MIN_CLUSTER_SHARE: f32 = 0.15;
/// The weight of a pixel of the bottom band (the others weigh 1).
const BOTTOM_WEIGHT: f32 = 0.35;

pub(super) fn estimate(photo: &RgbImage) -> Foreground {
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    let lab: Vec<[f32; 3]> = photo.pixels().map(|p| to_lab(p.0)).collect();
    let (ring, weights) = border_ring(w, h);
    let clusters = background_clusters(&ring.iter().map(|&i| lab[i]).collect::<Vec<_>>(), &weights);

    // Colour: distance to the nearest background cluster, in units of its spread.
    let colour: Vec<f32> = lab
        .iter()
        .map(|c| {
            let d = clusters.iter().map(|k| dist(c, &k.centre) / (k.spread + 4.0)).fold(f32::INFINITY, f32::min);
            d * d / (d * d + 4.0)
        })
        .collect();
    let colour = blur(&colour, w, h, 1.0);

    // Texture: local gradient energy, compared with the border's (smoother or rougher).
    let lightness: Vec<f32> = lab.iter().map(|c| c[0]).collect();
    let energy = blur(&gradient(&lightness, w, h), w, h, 2.0);
    let mut ring_energy: Vec<f32> = ring.iter().map(|&i| energy[i]).collect();
    let border_energy = median(&mut ring_energy);
    let texture: Vec<f32> =
        energy.iter().map(|e| (((e + 2.0) / (border_energy + 2.0)).ln().abs() / 4f32.ln()).min(1.0)).collect();

    // Centre prior, and the combined score in 0..=1.
    let score: Vec<f32> = (0..w * h)
        .map(|i| {
            let dx = ((i % w) as f32 + 0.5 - w as f32 / 2.0) / (0.38 * w as f32);
            let dy = ((i / w) as f32 + 0.5 - h as f32 / 2.0) / (0.38 * h as f32);
            let prior = (-0.5 * (dx * dx + dy * dy)).exp();
            ((0.75 * colour[i] + 0.25 * texture[i]) * (0.55 + 0.45 * prior)).clamp(0.0, 1.0)
        })
        .collect();

    let threshold = otsu(&score);
    let mut subject: Vec<bool> = score.iter().map(|&s| s > threshold).collect();
    let short = w.min(h) as f32;
    subject = open(&subject, w, h, (short / 60.0).max(1.0));
    subject = central_component(&subject, w, h);
    subject = close(&subject, w, h, (short / 40.0).max(1.0));
    subject = fill_holes(&subject, w, h);

    let fallback = !plausible(&subject, &score, w, h);
    if fallback {
        subject = oval(w, h);
    }
    let hard: Vec<f32> = subject.iter().map(|&s| if s { 1.0 } else { 0.0 }).collect();
    Foreground { width: w, height: h, mask: blur(&hard, w, h, 1.2), fallback }
}

/// Whether a cleaned region looks like a subject set off from its background: neither
/// tiny nor nearly everything, clearly higher-scoring than the rest, and not running
/// along most of the border.
fn plausible(subject: &[bool], score: &[f32], w: usize, h: usize) -> bool {
    let n = subject.len().max(1) as f32;
    let inside = subject.iter().filter(|&&s| s).count() as f32;
    let area = inside / n;
    if !(0.03..=0.9).contains(&area) {
        return false;
    }
    let (mut sum_in, mut sum_out) = (0.0f64, 0.0f64);
    for (&s, &v) in subject.iter().zip(score) {
        if s { sum_in += f64::from(v) } else { sum_out += f64::from(v) }
    }
    let contrast = sum_in / f64::from(inside) - sum_out / f64::from(n - inside);
    let edge: Vec<usize> =
        (0..w).flat_map(|x| [x, (h - 1) * w + x]).chain((0..h).flat_map(|y| [y * w, y * w + w - 1])).collect();
    let on_edge = edge.iter().filter(|&&i| subject[i]).count() as f32 / edge.len() as f32;
    contrast > 0.3 && on_edge < 0.5
}

/// A centred oval covering most of the frame: the subject of a photo it fills.
fn oval(w: usize, h: usize) -> Vec<bool> {
    (0..w * h)
        .map(|i| {
            let dx = ((i % w) as f32 + 0.5 - w as f32 / 2.0) / (0.43 * w as f32);
            let dy = ((i / w) as f32 + 0.5 - h as f32 / 2.0) / (0.44 * h as f32);
            dx * dx + dy * dy <= 1.0
        })
        .collect()
}

/// The pixels in a band along the border, about 4% of the short side, and how much
/// each counts as evidence of the background: the bottom band counts less, since a pet
/// is often cut off by the bottom of the photo.
fn border_ring(w: usize, h: usize) -> (Vec<usize>, Vec<f32>) {
    let band = ((w.min(h) as f32 * 0.04).round() as usize).max(1);
    let ring: Vec<usize> = (0..w * h)
        .filter(|&i| {
            let (x, y) = (i % w, i / w);
            x < band || y < band || x + band >= w || y + band >= h
        })
        .collect();
    let weights = ring.iter().map(|&i| if i / w + band >= h && i / w >= band { BOTTOM_WEIGHT } else { 1.0 }).collect();
    (ring, weights)
}

struct Cluster {
    centre: [f32; 3],
    /// Root-mean-square distance of the cluster's members from its centre.
    spread: f32,
}

/// The background's colours: k-means on the border pixels, seeded deterministically
/// (the median colour, then each time the pixel farthest from every centre so far),
/// keeping the clusters that hold a fair share of the border's weight.
fn background_clusters(colours: &[[f32; 3]], weights: &[f32]) -> Vec<Cluster> {
    if colours.is_empty() {
        return vec![Cluster { centre: [50.0, 0.0, 0.0], spread: 50.0 }];
    }
    let mut channels: [Vec<f32>; 3] = std::array::from_fn(|c| colours.iter().map(|p| p[c]).collect());
    let mut centres = vec![std::array::from_fn(|c| median(&mut channels[c]))];
    while centres.len() < CLUSTERS {
        let (far, d) = colours
            .iter()
            .map(|p| centres.iter().map(|c| dist(p, c)).fold(f32::INFINITY, f32::min))
            .enumerate()
            .fold((0, 0.0), |best, (i, d)| if d > best.1 { (i, d) } else { best });
        if d < 1.0 {
            break;
        }
        centres.push(colours[far]);
    }
    let mut members = vec![0usize; colours.len()];
    for _ in 0..10 {
        for (p, m) in colours.iter().zip(members.iter_mut()) {
            *m = nearest(p, &centres);
        }
        let mut sums = vec![([0.0f64; 3], 0usize); centres.len()];
        for (p, &m) in colours.iter().zip(&members) {
            for (sum, &v) in sums[m].0.iter_mut().zip(p) {
                *sum += f64::from(v);
            }
            sums[m].1 += 1;
        }
        for (centre, (sum, count)) in centres.iter_mut().zip(&sums) {
            if *count > 0 {
                *centre = std::array::from_fn(|c| (sum[c] / *count as f64) as f32);
            }
        }
    }
    // Per cluster: the sum of squared distances, the member count and their weight.
    let mut stats = vec![(0.0f64, 0usize, 0.0f32); centres.len()];
    for ((p, &m), &weight) in colours.iter().zip(&members).zip(weights) {
        stats[m].0 += f64::from(dist(p, &centres[m])).powi(2);
        stats[m].1 += 1;
        stats[m].2 += weight;
    }
    let total: f32 = weights.iter().sum();
    let heaviest = stats.iter().map(|s| s.2).fold(0.0, f32::max);
    centres
        .iter()
        .zip(&stats)
        .filter(|(_, (_, count, weight))| *count > 0 && (*weight == heaviest || *weight >= MIN_CLUSTER_SHARE * total))
        .map(|(centre, (sq, count, _))| Cluster {
            centre: *centre,
            spread: ((sq / *count as f64).sqrt() as f32).max(2.0),
        })
        .collect()
}

fn nearest(p: &[f32; 3], centres: &[[f32; 3]]) -> usize {
    let mut best = (0, f32::INFINITY);
    for (i, c) in centres.iter().enumerate() {
        let d = dist(p, c);
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

fn dist(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// sRGB (D65) to CIELAB.
fn to_lab(rgb: [u8; 3]) -> [f32; 3] {
    let lin = rgb.map(|c| {
        let c = f32::from(c) / 255.0;
        if c <= 0.040_45 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    });
    let x = (0.412_456_4 * lin[0] + 0.357_576_1 * lin[1] + 0.180_437_5 * lin[2]) / 0.950_47;
    let y = 0.212_672_9 * lin[0] + 0.715_152_2 * lin[1] + 0.072_175 * lin[2];
    let z = (0.019_333_9 * lin[0] + 0.119_192 * lin[1] + 0.950_304_1 * lin[2]) / 1.088_83;
    let f = |t: f32| if t > 0.008_856 { t.cbrt() } else { 7.787 * t + 16.0 / 116.0 };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

/// Sobel gradient magnitude, edges repeated.
fn gradient(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    crate::filters::sobel_magnitude(w, h, |x, y| v[y * w + x]).into_iter().map(|m| m / 8.0).collect()
}

/// Otsu's threshold of values in 0..=1: the split maximising the between-class variance.
fn otsu(values: &[f32]) -> f32 {
    const BINS: usize = 256;
    let mut histogram = [0u64; BINS];
    for &v in values {
        histogram[((v * (BINS - 1) as f32).round() as usize).min(BINS - 1)] += 1;
    }
    let total = values.len() as f64;
    let sum_all: f64 = histogram.iter().enumerate().map(|(i, &n)| i as f64 * n as f64).sum();
    let (mut below, mut sum_below, mut best) = (0.0, 0.0, (0, -1.0));
    for (i, &n) in histogram.iter().enumerate() {
        below += n as f64;
        sum_below += i as f64 * n as f64;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let between = below * above * (sum_below / below - (sum_all - sum_below) / above).powi(2);
        if between > best.1 {
            best = (i, between);
        }
    }
    (best.0 as f32 + 0.5) / (BINS - 1) as f32
}

/// Morphological opening with a disc: removes specks thinner than the radius.
fn open(mask: &[bool], w: usize, h: usize, radius: f32) -> Vec<bool> {
    dilate(&erode(mask, w, h, radius), w, h, radius)
}

/// Morphological closing with a disc: bridges gaps narrower than the radius.
fn close(mask: &[bool], w: usize, h: usize, radius: f32) -> Vec<bool> {
    erode(&dilate(mask, w, h, radius), w, h, radius)
}

fn dilate(mask: &[bool], w: usize, h: usize, radius: f32) -> Vec<bool> {
    distance(mask, w, h, false).iter().map(|&d| d <= radius).collect()
}

fn erode(mask: &[bool], w: usize, h: usize, radius: f32) -> Vec<bool> {
    let background: Vec<bool> = mask.iter().map(|m| !m).collect();
    distance(&background, w, h, false).iter().map(|&d| d > radius).collect()
}

/// The 4-connected regions of `mask`, as a label per pixel (0 = not in the mask) and
/// each label's size.
fn components(mask: &[bool], w: usize, h: usize) -> (Vec<u32>, Vec<usize>) {
    let mut labels = vec![0u32; w * h];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32;
        sizes.push(0);
        labels[start] = label;
        stack.push(start);
        while let Some(i) = stack.pop() {
            sizes[label as usize] += 1;
            let (x, y) = (i % w, i / w);
            let neighbours = [
                (x > 0).then(|| i - 1),
                (x + 1 < w).then(|| i + 1),
                (y > 0).then(|| i - w),
                (y + 1 < h).then(|| i + w),
            ];
            for j in neighbours.into_iter().flatten() {
                if mask[j] && labels[j] == 0 {
                    labels[j] = label;
                    stack.push(j);
                }
            }
        }
    }
    (labels, sizes)
}

/// The largest region reaching into the central quarter of the frame (or the largest
/// of all when none does).
fn central_component(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let (labels, sizes) = components(mask, w, h);
    let mut central = vec![false; sizes.len()];
    for y in h / 4..(3 * h).div_ceil(4) {
        for x in w / 4..(3 * w).div_ceil(4) {
            central[labels[y * w + x] as usize] = true;
        }
    }
    central[0] = false;
    let pick = |only_central: bool| {
        (1..sizes.len()).filter(|&l| !only_central || central[l]).max_by_key(|&l| (sizes[l], std::cmp::Reverse(l)))
    };
    match pick(true).or_else(|| pick(false)) {
        Some(keep) => labels.iter().map(|&l| l as usize == keep).collect(),
        None => vec![false; w * h],
    }
}

/// The mask with every region of background not connected to the border filled in.
fn fill_holes(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    let background: Vec<bool> = mask.iter().map(|m| !m).collect();
    let (labels, sizes) = components(&background, w, h);
    let mut outer = vec![false; sizes.len()];
    for x in 0..w {
        outer[labels[x] as usize] = true;
        outer[labels[(h - 1) * w + x] as usize] = true;
    }
    for y in 0..h {
        outer[labels[y * w] as usize] = true;
        outer[labels[y * w + w - 1] as usize] = true;
    }
    labels.iter().map(|&l| l == 0 || !outer[l as usize]).collect()
}
