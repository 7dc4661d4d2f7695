//! The sculpture on synthetic photos: a textured blob (the "pet") on a contrasting
//! background, and a texture filling the frame. The files are read back by hand here,
//! independently of the writers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use image::{Rgb, RgbImage, imageops};

use super::mesh::{self, Mesh, Region};
use super::relief::{BASE_MM, LONGEST_SIDE_MM, Plate, RELIEF_MM};
use super::*;

/// A deterministic value in 0..1 for a pixel.
fn noise(x: u32, y: u32, seed: u32) -> f32 {
    let mut h = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77) ^ seed.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h & 0xFFFF) as f32 / 65_535.0
}

/// Whether a point of the frame (u, v in 0..1) is on the blob: a lumpy oval, a little
/// off centre, like a sitting pet.
fn in_blob(u: f32, v: f32) -> bool {
    let (dx, dy) = ((u - 0.47) / 0.26, (v - 0.54) / 0.32);
    let angle = dy.atan2(dx);
    let r = 1.0 + 0.12 * (3.0 * angle).sin() + 0.06 * (5.0 * angle).cos();
    (dx * dx + dy * dy).sqrt() <= r
}

/// A pet sitting low in the frame: a round head on a body the photo's bottom edge cuts.
fn in_sitting_pet(u: f32, v: f32) -> bool {
    let head = ((u - 0.5) / 0.17).powi(2) + ((v - 0.4) / 0.22).powi(2) <= 1.0;
    let body = ((u - 0.5) / 0.42).powi(2) + ((v - 1.0) / 0.45).powi(2) <= 1.0;
    head || body
}

/// A striped, furry orange blob with two dark eyes on a blue-grey gradient.
fn blob_photo(w: u32, h: u32) -> RgbImage {
    photo_of(w, h, in_blob)
}

/// A striped, furry orange subject of the given shape, with two dark eyes, on a
/// blue-grey gradient.
fn photo_of(w: u32, h: u32, shape: fn(f32, f32) -> bool) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = ((x as f32 + 0.5) / w as f32, (y as f32 + 0.5) / h as f32);
        let n = noise(x, y, 1) - 0.5;
        if shape(u, v) {
            let eye = ((u - 0.41).powi(2) + (v - 0.42).powi(2)).min((u - 0.53).powi(2) + (v - 0.42).powi(2));
            if eye < 0.0009 {
                return Rgb([30, 25, 20]);
            }
            let stripe = 25.0 * ((u * 60.0 + v * 13.0).sin() > 0.3) as u8 as f32;
            let c = |base: f32| (base - stripe + 50.0 * n).clamp(0.0, 255.0) as u8;
            Rgb([c(215.0), c(135.0), c(55.0)])
        } else {
            let c = |base: f32| (base + 30.0 * v + 8.0 * n).clamp(0.0, 255.0) as u8;
            Rgb([c(60.0), c(100.0), c(150.0)])
        }
    })
}

/// Fur from edge to edge: no background to find.
fn full_frame_photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = noise(x, y, 7) - 0.5;
        let wave = 30.0 * ((x as f32 * 0.21).sin() * (y as f32 * 0.17).cos());
        let c = |base: f32| (base + wave + 60.0 * n).clamp(0.0, 255.0) as u8;
        Rgb([c(150.0), c(120.0), c(95.0)])
    })
}

/// The grid, its samples and the subject exactly as `sculpt` makes them.
fn prepare(photo: &RgbImage) -> (Plate, RgbImage, foreground::Foreground) {
    let plate = Plate::for_photo(photo.width(), photo.height(), CELLS_ON_LONGEST_SIDE);
    let samples = imageops::resize(photo, plate.columns as u32, plate.rows as u32, imageops::FilterType::Triangle);
    let subject = foreground::estimate(&samples);
    (plate, samples, subject)
}

/// A shape's true extent at each grid point.
fn truth(plate: &Plate, shape: fn(f32, f32) -> bool) -> Vec<bool> {
    let (w, h) = (plate.columns, plate.rows);
    (0..w * h).map(|i| shape(((i % w) as f32 + 0.5) / w as f32, ((i / w) as f32 + 0.5) / h as f32)).collect()
}

#[test]
fn sculpture_foreground_finds_the_blob() {
    assert_found(in_blob, 512, 384);
}

#[test]
fn sculpture_foreground_finds_a_subject_cut_off_by_the_bottom_edge() {
    assert_found(in_sitting_pet, 384, 512);
}

fn assert_found(shape: fn(f32, f32) -> bool, w: u32, h: u32) {
    let (plate, _, subject) = prepare(&photo_of(w, h, shape));
    let truth = truth(&plate, shape);
    assert!(!subject.fallback);
    let found: Vec<bool> = (0..truth.len()).map(|i| subject.contains(i % plate.columns, i / plate.columns)).collect();
    let both = found.iter().zip(&truth).filter(|(f, t)| **f && **t).count() as f32;
    let either = found.iter().zip(&truth).filter(|(f, t)| **f || **t).count() as f32;
    let background = truth.iter().filter(|t| !**t).count() as f32;
    let false_alarms = found.iter().zip(&truth).filter(|(f, t)| **f && !**t).count() as f32;
    let iou = both / either;
    assert!(iou > 0.8, "IoU {iou}");
    assert!(false_alarms / background < 0.05, "{} of the background taken", false_alarms / background);
}

#[test]
fn sculpture_foreground_falls_back_to_an_oval_on_a_full_frame_photo() {
    let (plate, _, subject) = prepare(&full_frame_photo(400, 400));
    assert!(subject.fallback);
    let covered = subject.mask.iter().filter(|&&m| m > 0.5).count() as f32 / subject.mask.len() as f32;
    assert!((0.5..0.7).contains(&covered), "{covered}");
    assert!(subject.contains(plate.columns / 2, plate.rows / 2) && !subject.contains(0, 0));
}

#[test]
fn sculpture_relief_rises_over_the_subject() {
    let photo = blob_photo(512, 384);
    let (plate, samples, subject) = prepare(&photo);
    let heights = relief::shape(&samples, &subject, &plate);
    let truth = truth(&plate, in_blob);
    let (w, h) = (plate.columns, plate.rows);
    let mean = |on_blob: bool| {
        // Away from the frame along the edge.
        let chosen: Vec<f32> = (0..w * h)
            .filter(|&i| truth[i] == on_blob && (8..w - 8).contains(&(i % w)) && (8..h - 8).contains(&(i / w)))
            .map(|i| heights[i])
            .collect();
        chosen.iter().sum::<f32>() / chosen.len() as f32
    };
    let (blob, background) = (mean(true), mean(false));
    assert!(blob > BASE_MM + 6.0 && background < BASE_MM + 0.5, "blob {blob} mm, background {background} mm");
    let max = heights.iter().copied().fold(0.0, f32::max);
    let min = heights.iter().copied().fold(f32::INFINITY, f32::min);
    assert_eq!((min, max), (BASE_MM, BASE_MM + RELIEF_MM));
}

/// A binary STL read back: triangles as corner positions, and the stored normals.
fn parse_stl(bytes: &[u8]) -> (Vec<[[f32; 3]; 3]>, Vec<[f32; 3]>) {
    assert!(bytes.len() >= 84);
    assert!(!bytes.starts_with(b"solid"), "an ASCII-looking header");
    let count = u32::from_le_bytes(bytes[80..84].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 84 + 50 * count);
    let f = |at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut triangles = Vec::with_capacity(count);
    let mut normals = Vec::with_capacity(count);
    for t in 0..count {
        let at = 84 + 50 * t;
        normals.push([f(at), f(at + 4), f(at + 8)]);
        triangles.push(std::array::from_fn(|v| std::array::from_fn(|c| f(at + 12 + 12 * v + 4 * c))));
        assert_eq!(&bytes[at + 48..at + 50], &[0, 0]);
    }
    (triangles, normals)
}

/// The STL's triangles with equal corners merged (same bits = same point).
fn weld(triangles: &[[[f32; 3]; 3]]) -> Mesh {
    let mut ids = BTreeMap::new();
    let mut positions = Vec::new();
    let triangles = triangles
        .iter()
        .map(|tri| {
            tri.map(|p| {
                *ids.entry(p.map(f32::to_bits)).or_insert_with(|| {
                    positions.push(p);
                    positions.len() as u32 - 1
                })
            })
        })
        .collect::<Vec<_>>();
    let regions = vec![Region::Top; triangles.len()];
    Mesh { positions, triangles, regions }
}

#[test]
fn sculpture_stl_is_a_closed_outward_solid_of_the_print_size() {
    let sculpture = sculpt(&blob_photo(512, 384), &RenderContext::detached()).unwrap();
    let (triangles, normals) = parse_stl(&sculpture.stl);
    assert_eq!(triangles.len(), sculpture.triangles);
    assert!((50_000..=100_000).contains(&triangles.len()), "{}", triangles.len());
    let welded = weld(&triangles);

    // Every directed edge once, and its reverse once: each undirected edge has exactly
    // two triangles, running it in opposite directions.
    let mut directed = BTreeMap::new();
    for tri in &welded.triangles {
        for k in 0..3 {
            *directed.entry((tri[k], tri[(k + 1) % 3])).or_insert(0) += 1;
        }
    }
    assert!(directed.values().all(|&n| n == 1), "a directed edge repeats");
    assert!(directed.keys().all(|&(a, b)| directed.contains_key(&(b, a))), "an edge has one triangle");
    assert_eq!(mesh::check(&welded), Ok(()));

    let mut volume = 0.0;
    for (t, (tri, stored)) in welded.triangles.iter().zip(&normals).enumerate() {
        let area_normal = welded.area_normal(t);
        assert!(mesh::norm(area_normal) > 1e-6, "triangle {t} is degenerate");
        let stored = stored.map(f64::from);
        assert!((mesh::norm(stored) - 1.0).abs() < 1e-5, "normal {t} is not unit");
        assert!(mesh::dot(stored, mesh::unit(area_normal)) > 0.9999, "normal {t} disagrees with the winding");
        let [a, b, c] = tri.map(|v| welded.positions[v as usize].map(f64::from));
        volume += mesh::dot(a, mesh::cross(b, c)) / 6.0;
    }

    let (min, max) = welded.bounds();
    let size = [max[0] - min[0], max[1] - min[1], max[2] - min[2]];
    assert_eq!(min, [0.0; 3]);
    assert!((size[0] - LONGEST_SIDE_MM).abs() <= 0.5 && (size[1] - 75.0).abs() <= 0.5, "{size:?}");
    assert!((size[2] - (BASE_MM + RELIEF_MM)).abs() < 1e-3, "{size:?}");
    assert_eq!(sculpture.size_mm, size);
    // The lowest point of the top surface is the bare base plate.
    let top_min = welded.positions.iter().map(|p| p[2]).filter(|&z| z > 0.0).fold(f32::INFINITY, f32::min);
    assert!((top_min - BASE_MM).abs() < 1e-4, "{top_min}");
    let footprint = f64::from(size[0]) * f64::from(size[1]);
    assert!(volume > footprint * f64::from(BASE_MM), "volume {volume} below the base's");
    assert!(volume < footprint * f64::from(size[2]), "volume {volume} above the bounding box's");
}

/// A little-endian u32 at a byte offset.
fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize
}

#[test]
fn sculpture_glb_is_well_formed() {
    let sculpture = sculpt(&blob_photo(512, 384), &RenderContext::detached()).unwrap();
    let glb = &sculpture.glb;
    assert_eq!(&glb[0..4], b"glTF");
    assert_eq!(u32_at(glb, 4), 2);
    assert_eq!(u32_at(glb, 8), glb.len());
    let json_len = u32_at(glb, 12);
    assert_eq!(&glb[16..20], b"JSON");
    assert_eq!(json_len % 4, 0);
    let json_bytes = &glb[20..20 + json_len];
    let text_end = json_bytes.iter().rposition(|&b| b != b' ').unwrap() + 1;
    assert!(json_len - text_end < 4, "more padding than needed");
    let doc: serde_json::Value = serde_json::from_slice(&json_bytes[..text_end]).unwrap();
    let bin_at = 20 + json_len;
    let bin_len = u32_at(glb, bin_at);
    assert_eq!(&glb[bin_at + 4..bin_at + 8], b"BIN\0");
    assert_eq!(bin_len % 4, 0);
    assert_eq!(bin_at + 8 + bin_len, glb.len());
    let bin = &glb[bin_at + 8..];

    assert_eq!(doc["asset"]["version"], "2.0");
    assert!(doc["asset"]["generator"].is_string());
    assert_eq!(doc["scenes"][doc["scene"].as_u64().unwrap() as usize]["nodes"][0], 0);
    assert_eq!(doc["nodes"][0]["mesh"], 0);
    let primitive = &doc["meshes"][0]["primitives"][0];
    assert_eq!(primitive["mode"], 4);
    assert!(doc["materials"][primitive["material"].as_u64().unwrap() as usize]["pbrMetallicRoughness"].is_object());
    let buffer_len = doc["buffers"][0]["byteLength"].as_u64().unwrap() as usize;
    assert!(buffer_len <= bin_len && bin_len - buffer_len < 4);

    // Every view inside the buffer and aligned; every accessor inside its view.
    let views = doc["bufferViews"].as_array().unwrap();
    for view in views {
        let (offset, length) = (view["byteOffset"].as_u64().unwrap_or(0), view["byteLength"].as_u64().unwrap());
        assert!(offset % 4 == 0 && (offset + length) as usize <= buffer_len, "{view}");
    }
    let accessors = doc["accessors"].as_array().unwrap();
    let read = |index: &serde_json::Value| -> (Vec<u32>, &serde_json::Value) {
        let accessor = &accessors[index.as_u64().unwrap() as usize];
        let view = &views[accessor["bufferView"].as_u64().unwrap() as usize];
        let components = match accessor["type"].as_str().unwrap() {
            "VEC3" => 3,
            "SCALAR" => 1,
            other => panic!("unexpected type {other}"),
        };
        assert!([5126, 5125].contains(&accessor["componentType"].as_u64().unwrap()));
        let start = (view["byteOffset"].as_u64().unwrap_or(0) + accessor["byteOffset"].as_u64().unwrap_or(0)) as usize;
        let size = accessor["count"].as_u64().unwrap() as usize * components * 4;
        assert!(size <= view["byteLength"].as_u64().unwrap() as usize, "{accessor}");
        (bin[start..start + size].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(), accessor)
    };
    let (positions, position_accessor) = read(&primitive["attributes"]["POSITION"]);
    let (normals, normal_accessor) = read(&primitive["attributes"]["NORMAL"]);
    let (indices, _) = read(&primitive["indices"]);
    assert_eq!(views[position_accessor["bufferView"].as_u64().unwrap() as usize]["target"], 34962);
    assert_eq!(views[normal_accessor["bufferView"].as_u64().unwrap() as usize]["target"], 34962);
    let positions: Vec<[f32; 3]> = positions.chunks(3).map(|c| std::array::from_fn(|i| f32::from_bits(c[i]))).collect();
    let normals: Vec<[f32; 3]> = normals.chunks(3).map(|c| std::array::from_fn(|i| f32::from_bits(c[i]))).collect();

    for c in 0..3 {
        let min = positions.iter().map(|p| p[c]).fold(f32::INFINITY, f32::min);
        let max = positions.iter().map(|p| p[c]).fold(f32::NEG_INFINITY, f32::max);
        // serde_json's default parser may miss the nearest f64 by one unit; as f32 it
        // must be the stored value exactly.
        let declared = |bound: &str| position_accessor[bound][c].as_f64().map(|v| v as f32);
        assert_eq!((declared("min"), declared("max")), (Some(min), Some(max)), "axis {c}");
        // Metres: the plaque's size, standing on y = 0, centred on x = 0, back at z = 0.
        let expected = [0.1, 0.075, 0.015][c];
        assert!((f64::from(max - min) - expected).abs() < 5e-4, "axis {c}: {min}..{max}");
    }
    assert!(normals.iter().all(|n| (n.iter().map(|c| c * c).sum::<f32>().sqrt() - 1.0).abs() < 1e-5));
    assert!(indices.iter().all(|&i| (i as usize) < positions.len()));
    assert_eq!(indices.len(), sculpture.triangles * 3);

    // Each triangle faces the way its corners' normals say.
    for tri in indices.chunks(3) {
        let [a, b, c] = [0, 1, 2].map(|k| positions[tri[k] as usize].map(f64::from));
        let face = mesh::unit(mesh::cross(mesh::sub(b, a), mesh::sub(c, a)));
        let shading: [f64; 3] = std::array::from_fn(|k| tri.iter().map(|&v| f64::from(normals[v as usize][k])).sum());
        assert!(mesh::dot(face, mesh::unit(shading)) > 0.0, "a triangle faces against its normals");
    }
    // Flat faces: the back faces -Z; the walls face ±X or ±Y.
    let back: Vec<_> = (0..positions.len()).filter(|&i| normals[i] == [0.0, 0.0, -1.0]).collect();
    assert!(back.iter().all(|&i| positions[i][2] == 0.0) && !back.is_empty());
    for side in [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]] {
        assert!(normals.contains(&side), "no wall facing {side:?}");
    }
}

#[test]
fn sculpture_is_deterministic_and_valid_for_a_full_frame_photo() {
    let photo = full_frame_photo(300, 400);
    let first = sculpt(&photo, &RenderContext::detached()).unwrap();
    let second = sculpt(&photo, &RenderContext::detached()).unwrap();
    assert!(first.stl == second.stl && first.glb == second.glb);
    let (triangles, _) = parse_stl(&first.stl);
    assert_eq!(mesh::check(&weld(&triangles)), Ok(()));
    assert!((first.size_mm[1] - LONGEST_SIDE_MM).abs() < 1e-3 && (first.size_mm[0] - 75.0).abs() < 0.5);
}

#[test]
fn sculpture_of_a_tiny_or_flat_photo_is_still_a_solid() {
    for photo in [RgbImage::new(1, 1), RgbImage::from_pixel(7, 3, Rgb([200, 200, 200]))] {
        let sculpture = sculpt(&photo, &RenderContext::detached()).unwrap();
        let (triangles, _) = parse_stl(&sculpture.stl);
        assert_eq!(mesh::check(&weld(&triangles)), Ok(()));
    }
}

#[test]
fn sculpture_reports_its_stages_and_stops_when_canceled() {
    let photo = blob_photo(160, 120);
    let cancel = Arc::new(AtomicBool::new(true));
    let ctx = RenderContext::new(|_, _| {}, cancel.clone());
    assert!(matches!(sculpt(&photo, &ctx), Err(StudioError::Canceled)));

    // Canceled while shaping the relief: stops at the next stage.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (flag, log) = (Arc::new(AtomicBool::new(false)), seen.clone());
    let trigger = flag.clone();
    let ctx = RenderContext::new(
        move |percent, stage| {
            log.lock().unwrap().push((percent, stage));
            if stage == "shaping the relief" {
                trigger.store(true, Ordering::Relaxed);
            }
        },
        flag,
    );
    assert!(matches!(sculpt(&photo, &ctx), Err(StudioError::Canceled)));
    assert_eq!(*seen.lock().unwrap(), [(20, "finding the subject"), (40, "shaping the relief")]);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let ctx = RenderContext::new(move |p, s| log.lock().unwrap().push((p, s)), Arc::new(AtomicBool::new(false)));
    sculpt(&photo, &ctx).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>().len(), 4);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0) && seen.iter().all(|s| (20..=85).contains(&s.0)));
}
