//! Checks of the files the studio produces, as a user downloads them. The bytes are
//! read by well-kept crates (WAV by `hound`, binary STL by `stl_io`, GLB by `gltf`)
//! rather than by readers written next to our writers, so a misunderstanding of a
//! format shared by a writer and its reader cannot pass. What stays here is test logic
//! over the data the crates read: the solid's geometry (closed, oriented, outward),
//! and the few things a strict loader refuses that the crates do not check themselves.

use std::collections::HashMap;
use std::io::Cursor;

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

/// Reads a 16-bit PCM WAV with `hound`, which checks the RIFF/WAVE tags, the `fmt `
/// chunk and that the `data` chunk holds whole frames, and fails on a `data` chunk cut
/// short.
pub fn read_wav(bytes: &[u8]) -> Result<Wav, String> {
    // hound reads the RIFF size but never compares it with the file's, and a player
    // that trusts a wrong size stops early or reads past the end, so the size hound
    // read is compared here.
    let riff_size = hound::read_wave_header(&mut Cursor::new(bytes)).map_err(|e| format!("the RIFF header: {e}"))?;
    if riff_size != bytes.len() as u64 {
        return Err(format!("the RIFF header says {riff_size} bytes, the file has {}", bytes.len()));
    }
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| format!("hound: {e}"))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(format!("not 16-bit PCM ({:?}, {} bits)", spec.sample_format, spec.bits_per_sample));
    }
    let expected = reader.len() as usize;
    let samples: Vec<i16> =
        reader.into_samples::<i16>().collect::<Result<_, _>>().map_err(|e| format!("the samples: {e}"))?;
    if samples.len() != expected {
        return Err(format!("the data chunk holds {expected} samples, {} were read", samples.len()));
    }
    Ok(Wav { sample_rate: spec.sample_rate, channels: spec.channels, samples })
}

/// What a binary STL holds, checked for being a closed surface.
pub struct Solid {
    pub triangles: usize,
    /// The bounding box's size along x, y and z.
    pub size: [f32; 3],
    pub volume: f64,
}

/// Reads a binary STL with `stl_io` and checks it: every edge shared by exactly two
/// triangles, each directed edge used once (consistent winding), no degenerate
/// triangle, stored normals of unit length agreeing with the winding, and a positive
/// enclosed volume (normals point outwards).
pub fn check_stl(bytes: &[u8]) -> Result<Solid, String> {
    let mesh = stl_io::read_stl(&mut Cursor::new(bytes)).map_err(|e| format!("stl_io: {e}"))?;
    let count = mesh.faces.len();
    // stl_io reads as many triangles as the header counts and ignores whatever follows
    // them. A binary STL is its 84-byte header and 50 bytes a triangle, nothing more, so
    // any other length is a count that disagrees with the data (or an ASCII file).
    if bytes.len() != 84 + count * 50 {
        return Err(format!("{count} triangles need {} bytes, the file has {}", 84 + count * 50, bytes.len()));
    }
    // stl_io's own check: no zero-area face, and every edge met by one running the other
    // way. The checks below are stricter (each directed edge exactly once, normals,
    // volume), but a file stl_io itself calls broken must not pass either.
    mesh.validate().map_err(|e| format!("stl_io finds the mesh open or degenerate: {e}"))?;
    // stl_io merges corners whose coordinates are bit-for-bit equal into one vertex, so
    // the vertex indices of its faces say which triangles share an edge.
    let mut directed: HashMap<(usize, usize), u32> = HashMap::new();
    let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
    let mut volume = 0.0f64;
    for (t, face) in mesh.faces.iter().enumerate() {
        let normal = face.normal.0;
        let v = face.vertices.map(|i| mesh.vertices[i].0);
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
        let ids = face.vertices;
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

/// What a GLB's mesh holds, after checking its structure.
pub struct GlbMesh {
    pub triangles: usize,
    pub vertices: usize,
    /// POSITION's `max - min`, in metres.
    pub size: [f64; 3],
}

/// An accessor the reader is about to read as `[f32; 3]` must be one: `gltf`'s reader
/// takes the accessor's word for its type and only debug-asserts it.
fn require_vec3_f32(accessor: &gltf::Accessor, what: &str) -> Result<(), String> {
    use gltf::accessor::{DataType, Dimensions};
    if accessor.dimensions() != Dimensions::Vec3 || accessor.data_type() != DataType::F32 {
        return Err(format!("{what} is {:?} of {:?}, not VEC3 of FLOAT", accessor.dimensions(), accessor.data_type()));
    }
    Ok(())
}

/// Reads a GLB with `gltf` and checks what a loader relies on: header and chunk
/// lengths, 4-byte alignment, every accessor inside its buffer view and every view
/// inside the buffer, POSITION's min/max equal to the data's extremes, unit normals,
/// indices in range.
pub fn check_glb(bytes: &[u8]) -> Result<GlbMesh, String> {
    // The container, read by gltf, which checks the magic, version 2, that the header's
    // length and each chunk's length fit in the file, and that the first chunk is JSON
    // and the second BIN.
    let container = gltf::Glb::from_slice(bytes).map_err(|e| format!("the GLB container: {e}"))?;
    let bin = container.bin.as_deref().ok_or("no BIN chunk")?;
    // gltf accepts a header length shorter than the file, unaligned chunks and bytes
    // after the BIN chunk; the specification allows none of these, and stricter loaders
    // refuse them. The arithmetic is over the lengths gltf read.
    if container.header.length as usize != bytes.len() {
        return Err("the header's length is not the file's".into());
    }
    if !container.json.len().is_multiple_of(4) || !bin.len().is_multiple_of(4) {
        return Err("a chunk is not 4-byte aligned".into());
    }
    if 12 + 8 + container.json.len() + 8 + bin.len() != bytes.len() {
        return Err("the BIN chunk does not end the file".into());
    }

    // The document, read by gltf, which validates it on load: required properties
    // present, enumerations known, every index (accessor to bufferView, bufferView to
    // buffer, primitive to accessor) naming an existing object, and POSITION having a
    // three-number min and max. It does not check that the data fits or matches what
    // the JSON says about it; that is checked below.
    let document = gltf::Gltf::from_slice(bytes).map_err(|e| format!("the glTF document: {e}"))?;
    if document.as_json().asset.version != "2.0" {
        return Err("asset.version is not 2.0".into());
    }
    let blob = document.blob.as_deref().ok_or("no binary buffer")?;
    let buffer = document.buffers().next().ok_or("no buffer")?;
    if !matches!(buffer.source(), gltf::buffer::Source::Bin) || buffer.length() > blob.len() {
        return Err("the buffer is not the BIN chunk, or is longer than it".into());
    }
    for view in document.views() {
        if view.offset() + view.length() > view.buffer().length() || !view.offset().is_multiple_of(4) {
            return Err(format!("bufferView {} lies outside the buffer or is unaligned", view.index()));
        }
    }
    for accessor in document.accessors() {
        let start = accessor.view().map_or(0, |v| v.offset()) + accessor.offset();
        if !start.is_multiple_of(accessor.data_type().size()) {
            return Err(format!("accessor {} is not aligned to its component size", accessor.index()));
        }
    }

    let mesh = document.meshes().next().ok_or("no mesh")?;
    let primitive = mesh.primitives().next().ok_or("no primitive")?;
    if primitive.mode() != gltf::mesh::Mode::Triangles {
        return Err("the primitive is not a triangle list".into());
    }
    // The reader slices each accessor out of its view and each view out of the buffer's
    // declared length, and answers None where either does not fit: so a read that
    // answers is an accessor inside its view inside the buffer.
    let reader = primitive.reader(|buffer| match buffer.source() {
        gltf::buffer::Source::Bin => blob.get(..buffer.length()),
        gltf::buffer::Source::Uri(_) => None,
    });

    let position = primitive.get(&gltf::Semantic::Positions).ok_or("no POSITION")?;
    require_vec3_f32(&position, "POSITION")?;
    let positions: Vec<[f32; 3]> =
        reader.read_positions().ok_or("POSITION does not fit its bufferView or the buffer")?.collect();
    let vertices = positions.len();
    if vertices != position.count() {
        return Err(format!("POSITION counts {} vertices, {vertices} were read", position.count()));
    }
    let (min, max) = (position.min().unwrap_or_default(), position.max().unwrap_or_default());
    let mut size = [0.0; 3];
    for axis in 0..3 {
        let values = positions.iter().map(|p| f64::from(p[axis]));
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (min, max) = (min[axis].as_f64(), max[axis].as_f64());
        if min.is_none_or(|m| (m - lo).abs() > 1e-6) || max.is_none_or(|m| (m - hi).abs() > 1e-6) {
            return Err(format!("POSITION min/max on axis {axis} are not the data's {lo}..{hi}"));
        }
        size[axis] = hi - lo;
    }

    if let Some(normal) = primitive.get(&gltf::Semantic::Normals) {
        require_vec3_f32(&normal, "NORMAL")?;
        let normals: Vec<[f32; 3]> =
            reader.read_normals().ok_or("NORMAL does not fit its bufferView or the buffer")?.collect();
        if normals.len() != vertices || normal.count() != vertices {
            return Err("NORMAL and POSITION counts differ".into());
        }
        let length = |n: &[f32; 3]| n.map(f64::from).iter().map(|c| c * c).sum::<f64>().sqrt();
        if let Some(bad) = normals.iter().find(|n| (length(n) - 1.0).abs() > 1e-3) {
            return Err(format!("a normal is not of unit length: {bad:?}"));
        }
    }

    let index_accessor = primitive.indices().ok_or("no indices")?;
    let indices: Vec<u32> =
        reader.read_indices().ok_or("the indices do not fit their bufferView or the buffer")?.into_u32().collect();
    if indices.len() != index_accessor.count()
        || !indices.len().is_multiple_of(3)
        || indices.iter().any(|i| *i as usize >= vertices)
    {
        return Err("indices are not whole triangles within POSITION".into());
    }
    Ok(GlbMesh { triangles: indices.len() / 3, vertices, size })
}
