//! Independent readers for what the studio produces, so the system tests check the
//! files a user downloads rather than trusting the code that wrote them: WAV (PCM),
//! binary STL and GLB (glTF 2.0).

use std::collections::HashMap;

/// A decoded 16-bit PCM WAV.
pub struct Wav {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved samples.
    pub samples: Vec<i16>,
}

impl Wav {
    pub fn duration_seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels) / f64::from(self.sample_rate)
    }

    /// Root mean square of a span of seconds, relative to full scale.
    pub fn rms(&self, from_s: f64, to_s: f64) -> f64 {
        let frame =
            |t: f64| ((t * f64::from(self.sample_rate)) as usize * usize::from(self.channels)).min(self.samples.len());
        let span = &self.samples[frame(from_s)..frame(to_s)];
        let sum: f64 = span.iter().map(|s| (f64::from(*s) / 32768.0).powi(2)).sum();
        (sum / span.len().max(1) as f64).sqrt()
    }

    pub fn peak(&self) -> i32 {
        self.samples.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0)
    }
}

fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn f32_le(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a RIFF/WAVE file with a PCM `fmt ` chunk and a `data` chunk.
pub fn parse_wav(bytes: &[u8]) -> Result<Wav, String> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    if u32_le(bytes, 4) as usize + 8 != bytes.len() {
        return Err(format!("RIFF size {} does not match the file's {} bytes", u32_le(bytes, 4), bytes.len()));
    }
    let (mut format, mut data) = (None, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32_le(bytes, at + 4) as usize;
        let body = bytes.get(at + 8..at + 8 + size).ok_or("a chunk runs past the end")?;
        match &bytes[at..at + 4] {
            b"fmt " => format = Some((u16_le(body, 0), u16_le(body, 2), u32_le(body, 4), u16_le(body, 14))),
            b"data" => data = Some(body),
            _ => {}
        }
        at += 8 + size + (size & 1);
    }
    let (audio_format, channels, sample_rate, bits) = format.ok_or("no fmt chunk")?;
    if audio_format != 1 || bits != 16 {
        return Err(format!("not 16-bit PCM (format {audio_format}, {bits} bits)"));
    }
    let data = data.ok_or("no data chunk")?;
    let samples = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    Ok(Wav { sample_rate, channels, samples })
}

/// What a binary STL holds, checked for being a closed surface.
pub struct Solid {
    pub triangles: usize,
    /// The bounding box's size along x, y and z.
    pub size: [f32; 3],
    pub volume: f64,
}

/// Parses a binary STL and checks it: every edge shared by exactly two triangles, each
/// directed edge used once (consistent winding), no degenerate triangle, stored normals
/// of unit length agreeing with the winding, and a positive enclosed volume (normals
/// point outwards).
pub fn check_stl(bytes: &[u8]) -> Result<Solid, String> {
    let count = u32_le(bytes.get(..84).ok_or("shorter than an STL header")?, 80) as usize;
    if bytes.len() != 84 + count * 50 {
        return Err(format!("{count} triangles need {} bytes, the file has {}", 84 + count * 50, bytes.len()));
    }
    let mut vertex_ids: HashMap<[u32; 3], usize> = HashMap::new();
    let mut directed: HashMap<(usize, usize), u32> = HashMap::new();
    let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
    let mut volume = 0.0f64;
    for t in 0..count {
        let at = 84 + t * 50;
        let read =
            |i: usize| [f32_le(bytes, at + i * 12), f32_le(bytes, at + i * 12 + 4), f32_le(bytes, at + i * 12 + 8)];
        let (normal, v) = (read(0), [read(1), read(2), read(3)]);
        let e1 = [v[1][0] - v[0][0], v[1][1] - v[0][1], v[1][2] - v[0][2]];
        let e2 = [v[2][0] - v[0][0], v[2][1] - v[0][1], v[2][2] - v[0][2]];
        let cross = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
        let area2 = (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2]).sqrt();
        if area2 <= 1e-9 {
            return Err(format!("triangle {t} is degenerate"));
        }
        let length = (normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2]).sqrt();
        let agreement = (normal[0] * cross[0] + normal[1] * cross[1] + normal[2] * cross[2]) / area2;
        if (length - 1.0).abs() > 1e-3 || agreement < 0.99 {
            return Err(format!("triangle {t}: normal {normal:?} (length {length}) disagrees with its winding"));
        }
        let ids: Vec<usize> = v
            .iter()
            .map(|p| {
                let next = vertex_ids.len();
                *vertex_ids.entry([p[0].to_bits(), p[1].to_bits(), p[2].to_bits()]).or_insert(next)
            })
            .collect();
        for (a, b) in [(ids[0], ids[1]), (ids[1], ids[2]), (ids[2], ids[0])] {
            *directed.entry((a, b)).or_default() += 1;
        }
        for p in &v {
            for axis in 0..3 {
                lo[axis] = lo[axis].min(p[axis]);
                hi[axis] = hi[axis].max(p[axis]);
            }
        }
        // The divergence theorem: the sum of signed tetrahedra from the origin.
        let [a, b, c] = v.map(|p| p.map(f64::from));
        volume += (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]))
            / 6.0;
    }
    for (&(a, b), &uses) in &directed {
        if uses != 1 {
            return Err(format!("the directed edge {a}->{b} is used {uses} times (inconsistent winding)"));
        }
        if !directed.contains_key(&(b, a)) {
            return Err(format!("the edge {a}-{b} borders one triangle only (a hole)"));
        }
    }
    if volume <= 0.0 {
        return Err(format!("the enclosed volume is {volume}: the normals point inwards"));
    }
    Ok(Solid { triangles: count, size: [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]], volume })
}

/// What a GLB holds, after checking its structure.
pub struct Gltf {
    pub triangles: usize,
    pub vertices: usize,
    /// POSITION's `max - min`, in metres.
    pub size: [f64; 3],
}

/// Parses a GLB and checks what a loader relies on: header and chunk lengths, 4-byte
/// alignment, every accessor inside its buffer view and every view inside the buffer,
/// POSITION's min/max equal to the data's extremes, unit normals, indices in range.
pub fn check_glb(bytes: &[u8]) -> Result<Gltf, String> {
    if bytes.len() < 20 || &bytes[0..4] != b"glTF" || u32_le(bytes, 4) != 2 {
        return Err("not a glTF 2.0 binary".into());
    }
    if u32_le(bytes, 8) as usize != bytes.len() {
        return Err("the header's length is not the file's".into());
    }
    let json_length = u32_le(bytes, 12) as usize;
    if u32_le(bytes, 16) != 0x4E4F_534A || !json_length.is_multiple_of(4) {
        return Err("the first chunk is not a 4-byte-aligned JSON chunk".into());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&bytes[20..20 + json_length]).map_err(|e| format!("the JSON chunk: {e}"))?;
    let bin_at = 20 + json_length;
    let bin_length = u32_le(bytes, bin_at) as usize;
    if u32_le(bytes, bin_at + 4) != 0x004E_4942
        || !bin_length.is_multiple_of(4)
        || bin_at + 8 + bin_length != bytes.len()
    {
        return Err("the second chunk is not a 4-byte-aligned BIN chunk ending the file".into());
    }
    let bin = &bytes[bin_at + 8..];
    if json["asset"]["version"] != "2.0" {
        return Err("asset.version is not 2.0".into());
    }
    let buffer_length = json["buffers"][0]["byteLength"].as_u64().ok_or("no buffer")? as usize;
    if buffer_length > bin.len() {
        return Err("the buffer is longer than the BIN chunk".into());
    }
    let views = json["bufferViews"].as_array().ok_or("no bufferViews")?;
    let view_range = |index: usize| -> Result<(usize, usize), String> {
        let view = views.get(index).ok_or("an accessor names a missing bufferView")?;
        let offset = view["byteOffset"].as_u64().unwrap_or(0) as usize;
        let length = view["byteLength"].as_u64().ok_or("a bufferView has no byteLength")? as usize;
        if offset + length > buffer_length || !offset.is_multiple_of(4) {
            return Err(format!("bufferView {index} lies outside the buffer or is unaligned"));
        }
        Ok((offset, length))
    };
    let accessors = json["accessors"].as_array().ok_or("no accessors")?;
    // Reads an accessor as f64 values, checking that it fits its view.
    let read = |index: u64| -> Result<(usize, usize, Vec<f64>), String> {
        let accessor = accessors.get(index as usize).ok_or("a primitive names a missing accessor")?;
        let components = match accessor["type"].as_str() {
            Some("SCALAR") => 1,
            Some("VEC2") => 2,
            Some("VEC3") => 3,
            Some("VEC4") => 4,
            other => return Err(format!("accessor type {other:?}")),
        };
        let (size, as_f64): (usize, fn(&[u8]) -> f64) = match accessor["componentType"].as_u64() {
            Some(5126) => (4, |b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            Some(5125) => (4, |b| f64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            Some(5123) => (2, |b| f64::from(u16::from_le_bytes([b[0], b[1]]))),
            other => return Err(format!("componentType {other:?}")),
        };
        let count = accessor["count"].as_u64().ok_or("an accessor has no count")? as usize;
        let (view_offset, view_length) = view_range(accessor["bufferView"].as_u64().ok_or("no bufferView")? as usize)?;
        let offset = accessor["byteOffset"].as_u64().unwrap_or(0) as usize;
        if offset + count * components * size > view_length || !(view_offset + offset).is_multiple_of(size) {
            return Err(format!("accessor {index} does not fit its bufferView"));
        }
        let data = &bin[view_offset + offset..view_offset + offset + count * components * size];
        Ok((count, components, data.chunks_exact(size).map(as_f64).collect()))
    };
    let primitive = &json["meshes"][0]["primitives"][0];
    if primitive["mode"].as_u64().unwrap_or(4) != 4 {
        return Err("the primitive is not a triangle list".into());
    }
    let position_index = primitive["attributes"]["POSITION"].as_u64().ok_or("no POSITION")?;
    let (vertices, _, positions) = read(position_index)?;
    let accessor = &accessors[position_index as usize];
    let mut size = [0.0; 3];
    for axis in 0..3 {
        let values = positions.iter().skip(axis).step_by(3);
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let (min, max) = (accessor["min"][axis].as_f64(), accessor["max"][axis].as_f64());
        if min.is_none_or(|m| (m - lo).abs() > 1e-6) || max.is_none_or(|m| (m - hi).abs() > 1e-6) {
            return Err(format!("POSITION min/max on axis {axis} are not the data's {lo}..{hi}"));
        }
        size[axis] = hi - lo;
    }
    if let Some(normal_index) = primitive["attributes"]["NORMAL"].as_u64() {
        let (count, _, normals) = read(normal_index)?;
        if count != vertices {
            return Err("NORMAL and POSITION counts differ".into());
        }
        if let Some(bad) =
            normals.chunks_exact(3).find(|n| ((n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt() - 1.0).abs() > 1e-3)
        {
            return Err(format!("a normal is not of unit length: {bad:?}"));
        }
    }
    let (index_count, _, indices) = read(primitive["indices"].as_u64().ok_or("no indices")?)?;
    if !index_count.is_multiple_of(3) || indices.iter().any(|i| *i as usize >= vertices) {
        return Err("indices are not whole triangles within POSITION".into());
    }
    Ok(Gltf { triangles: index_count / 3, vertices, size })
}
