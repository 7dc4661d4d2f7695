//! GLB, the binary container of glTF 2.0: a 12-byte header, a JSON chunk padded with
//! spaces and a BIN chunk padded with zeros, each to a multiple of 4 bytes.
//!
//! glTF counts metres with +Y up, and a viewer's default camera looks down -Z. The
//! plaque therefore **stands upright**, like a picture on a wall: the STL's millimetres
//! become metres with the axes unchanged (X to the photo's right, the photo's top at
//! +Y, the relief towards +Z, the viewer), its lower edge stands on y = 0, its back lies
//! at z = 0 and it is centred on x = 0.
//!
//! The mesh's shared points are split per region (top, each wall, bottom): the top gets
//! smooth normals (the area-weighted mean of the top triangles around the point), the
//! walls and the bottom flat ones, so the plaque's edges render sharp.

use serde_json::json;

use super::mesh::{Mesh, Region, unit};

const ARRAY_BUFFER: u32 = 34_962;
const ELEMENT_ARRAY_BUFFER: u32 = 34_963;
const FLOAT: u32 = 5_126;
const UNSIGNED_INT: u32 = 5_125;
const TRIANGLES: u32 = 4;

/// The points of the mesh as drawn: split per region, with one normal each.
struct Shaded {
    positions: Vec<[f32; 3]>,
    normals: Vec<[f32; 3]>,
    indices: Vec<u32>,
}

fn shade(mesh: &Mesh) -> Shaded {
    // The drawn point of each (mesh point, region), made on first use.
    let mut drawn = vec![u32::MAX; mesh.positions.len() * Region::COUNT];
    let mut sources = Vec::new();
    let mut sums: Vec<[f64; 3]> = Vec::new();
    let mut indices = Vec::with_capacity(mesh.triangles.len() * 3);
    for (t, (tri, &region)) in mesh.triangles.iter().zip(&mesh.regions).enumerate() {
        let weighted = mesh.area_normal(t);
        for &v in tri {
            let slot = &mut drawn[v as usize * Region::COUNT + region as usize];
            if *slot == u32::MAX {
                *slot = sources.len() as u32;
                sources.push(v);
                sums.push([0.0; 3]);
            }
            let sum = &mut sums[*slot as usize];
            for c in 0..3 {
                sum[c] += weighted[c];
            }
            indices.push(*slot);
        }
    }
    let (min, max) = mesh.bounds();
    let origin = [(min[0] + max[0]) / 2.0, min[1], min[2]];
    let positions = sources
        .iter()
        .map(|&v| {
            let p = mesh.positions[v as usize];
            std::array::from_fn(|c| (p[c] - origin[c]) / 1000.0)
        })
        .collect();
    let normals = sums.iter().map(|&s| unit(s).map(|c| c as f32)).collect();
    Shaded { positions, normals, indices }
}

pub(super) fn write(mesh: &Mesh) -> Vec<u8> {
    let shaded = shade(mesh);
    let mut bin = Vec::with_capacity(shaded.positions.len() * 24 + shaded.indices.len() * 4);
    for p in &shaded.positions {
        p.iter().for_each(|c| bin.extend_from_slice(&c.to_le_bytes()));
    }
    let normals_at = bin.len();
    for n in &shaded.normals {
        n.iter().for_each(|c| bin.extend_from_slice(&c.to_le_bytes()));
    }
    let indices_at = bin.len();
    for i in &shaded.indices {
        bin.extend_from_slice(&i.to_le_bytes());
    }
    let (min, max) = bounds(&shaded.positions);
    let count = shaded.positions.len();
    let document = json!({
        "asset": { "version": "2.0", "generator": "PetPortrait local studio (relief sculpture)" },
        "scene": 0,
        "scenes": [{ "name": "PetPortrait sculpture", "nodes": [0] }],
        "nodes": [{ "name": "relief", "mesh": 0 }],
        "meshes": [{
            "name": "relief",
            "primitives": [{
                "attributes": { "POSITION": 0, "NORMAL": 1 },
                "indices": 2,
                "material": 0,
                "mode": TRIANGLES,
            }],
        }],
        "materials": [{
            "name": "clay",
            "pbrMetallicRoughness": {
                "baseColorFactor": [0.72, 0.6, 0.5, 1.0],
                "metallicFactor": 0.0,
                "roughnessFactor": 0.85,
            },
        }],
        "accessors": [
            {
                "bufferView": 0, "componentType": FLOAT, "count": count, "type": "VEC3",
                // As f64, so the JSON numbers are exactly the stored f32 values.
                "min": min.map(f64::from), "max": max.map(f64::from),
            },
            { "bufferView": 1, "componentType": FLOAT, "count": count, "type": "VEC3" },
            { "bufferView": 2, "componentType": UNSIGNED_INT, "count": shaded.indices.len(), "type": "SCALAR" },
        ],
        "bufferViews": [
            { "buffer": 0, "byteOffset": 0, "byteLength": normals_at, "target": ARRAY_BUFFER },
            { "buffer": 0, "byteOffset": normals_at, "byteLength": indices_at - normals_at, "target": ARRAY_BUFFER },
            {
                "buffer": 0, "byteOffset": indices_at, "byteLength": bin.len() - indices_at,
                "target": ELEMENT_ARRAY_BUFFER,
            },
        ],
        "buffers": [{ "byteLength": bin.len() }],
    });
    container(document.to_string().into_bytes(), bin)
}

fn bounds(points: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    let mut min = [f32::INFINITY; 3];
    let mut max = [f32::NEG_INFINITY; 3];
    for p in points {
        for c in 0..3 {
            min[c] = min[c].min(p[c]);
            max[c] = max[c].max(p[c]);
        }
    }
    (min, max)
}

/// The GLB container around a JSON document and its binary buffer.
fn container(mut json: Vec<u8>, mut bin: Vec<u8>) -> Vec<u8> {
    json.resize(json.len().next_multiple_of(4), b' ');
    bin.resize(bin.len().next_multiple_of(4), 0);
    let total = 12 + 8 + json.len() + 8 + bin.len();
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(b"glTF");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    for (kind, chunk) in [(b"JSON", &json), (b"BIN\0", &bin)] {
        out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(chunk);
    }
    out
}
