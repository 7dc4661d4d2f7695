//! The studio through the API, on a real pet photo: every portrait style, the music and
//! the sculpture, EXIF orientation, and no metadata in anything served.

use std::time::Duration;

use image::RgbImage;
use petportrait_tests::fixtures::{chelsea_jpeg, mean_abs_diff};
use petportrait_tests::{Mode, TestApp};
use reqwest::StatusCode;

all_modes!(every_portrait_style_through_the_api, every_portrait_style_through_the_api);

/// Every portrait style the catalogue lists is produced through the API from a real
/// photo of a cat: a JPEG of the photo's size that visibly differs from it and from the
/// others, and each style's own claim holds (see `style_claims`).
async fn every_portrait_style_through_the_api(mode: Mode) {
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "100")]).await;
    let ann = app.user("Ann").await;
    let (status, styles) = ann.get("/v1/styles").await;
    assert_eq!(status, StatusCode::OK);
    let portrait =
        styles["kinds"].as_array().expect("kinds").iter().find(|k| k["kind"] == "portrait").expect("the portrait kind");
    assert_eq!(portrait["available"], true);
    let portrait_styles: Vec<String> = portrait["styles"]
        .as_array()
        .expect("styles")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert!(portrait_styles.len() >= 6, "{styles}");
    // The cost before ordering: what the catalogue says, against what the caller has.
    for listed in portrait["styles"].as_array().expect("styles") {
        let (status, quote) =
            ann.get(&format!("/v1/quote?kind=portrait&style={}", listed["id"].as_str().expect("id"))).await;
        assert_eq!(status, StatusCode::OK, "{quote}");
        assert_eq!(quote["credits"], listed["credits"]);
        assert_eq!((quote["available"].as_i64(), quote["affordable"].as_bool()), (Some(100), Some(true)));
    }
    let (status, unknown) = ann.get("/v1/quote?kind=portrait&style=cubism").await;
    assert_eq!((status, unknown["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_style")));
    let (status, missing) = ann.get("/v1/quote?kind=portrait").await;
    assert_eq!((status, missing["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_parameter")));
    assert_eq!(portrait["options"]["max_side"]["max"], 2048, "{portrait}");
    let upload = ann.upload_ok(chelsea_jpeg()).await;
    let photo = image::load_from_memory(&chelsea_jpeg()).expect("the fixture decodes").to_rgb8();
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for style in &portrait_styles {
            ids.push(ann.create_portrait(&upload, style).await["id"].as_str().expect("id").to_owned());
        }
        ids
    };
    let mut portraits = Vec::new();
    for (style, id) in portrait_styles.iter().zip(&ids) {
        let done = ann.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{style}: {done}");
        let (status, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK);
        let portrait = image::load_from_memory(&bytes).expect("the output decodes").to_rgb8();
        assert_eq!(portrait.dimensions(), (451, 300), "{style}");
        let difference = mean_abs_diff(&portrait, &photo);
        style_claims(style, &photo, &portrait);
        assert!(difference > 5.0, "{style} must visibly differ from the photo (mean difference {difference:.1})");
        portraits.push((style, portrait));
    }
    for (i, (a, pa)) in portraits.iter().enumerate() {
        for (b, pb) in portraits.iter().skip(i + 1) {
            assert!(mean_abs_diff(pa, pb) > 4.0, "{a} and {b} look alike");
        }
    }

    // The file the user chose: a PNG at most 256 pixels on its longest side.
    let body = serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "oil_paint",
                                  "options": {"max_side": 256, "format": "png"}});
    let (status, created) = ann.post_json("/v1/generations", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let done = ann.wait_terminal(created["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(done["outputs"][0]["content_type"], "image/png", "{done}");
    let (_, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
    let png = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).expect("a PNG");
    assert_eq!((png.width(), png.height()), (256, 170));
    for bad in
        [serde_json::json!({"max_side": 9000}), serde_json::json!({"format": "gif"}), serde_json::json!({"size": 1})]
    {
        let body = serde_json::json!({"kind": "portrait", "upload_id": upload, "style": "oil_paint", "options": bad});
        let (status, problem) = ann.post_json("/v1/generations", &body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_options")),
            "{bad}"
        );
    }
    app.stop().await;
}

/// Luminance of a pixel, 0–255.
fn luma(p: &image::Rgb<u8>) -> f64 {
    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
}

/// Mean absolute Laplacian of the luminance: how much fine texture an image holds.
fn roughness(img: &RgbImage) -> f64 {
    let (w, h) = img.dimensions();
    let mut total = 0.0;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let around = luma(img.get_pixel(x - 1, y))
                + luma(img.get_pixel(x + 1, y))
                + luma(img.get_pixel(x, y - 1))
                + luma(img.get_pixel(x, y + 1));
            total += (4.0 * luma(img.get_pixel(x, y)) - around).abs();
        }
    }
    total / f64::from((w - 2) * (h - 2))
}

/// Mean difference between the colour channels: 0 for a grey image.
fn colourfulness(img: &RgbImage) -> f64 {
    let total: f64 = img
        .pixels()
        .map(|p| f64::from(p[0].abs_diff(p[1])) + f64::from(p[1].abs_diff(p[2])) + f64::from(p[0].abs_diff(p[2])))
        .sum();
    total / f64::from(img.width() * img.height())
}

/// Share of horizontally adjacent pixels that are (nearly, through JPEG) the same.
fn flat_neighbours(img: &RgbImage) -> f64 {
    let (w, h) = img.dimensions();
    let mut same = 0u32;
    for y in 0..h {
        for x in 0..w - 1 {
            let (a, b) = (img.get_pixel(x, y), img.get_pixel(x + 1, y));
            if (0..3).map(|c| u32::from(a[c].abs_diff(b[c]))).sum::<u32>() < 12 {
                same += 1;
            }
        }
    }
    f64::from(same) / f64::from((w - 1) * h)
}

/// Share of pixels darker than `level`.
fn dark_share(img: &RgbImage, level: f64) -> f64 {
    img.pixels().filter(|p| luma(p) < level).count() as f64 / f64::from(img.width() * img.height())
}

fn mean_luma(img: &RgbImage) -> f64 {
    img.pixels().map(luma).sum::<f64>() / f64::from(img.width() * img.height())
}

/// The four quadrants of an image, as separate images.
fn quadrants(img: &RgbImage) -> Vec<RgbImage> {
    let (hw, hh) = (img.width() / 2, img.height() / 2);
    [(0, 0), (hw, 0), (0, hh), (hw, hh)]
        .into_iter()
        .map(|(x, y)| image::imageops::crop_imm(img, x, y, hw, hh).to_image())
        .collect()
}

/// What each style claims to do to the photo, measured on the output. The outputs are
/// deterministic, so these thresholds hold with room to spare (the measured values are
/// printed).
fn style_claims(style: &str, photo: &RgbImage, out: &RgbImage) {
    let (r_photo, r_out) = (roughness(photo), roughness(out));
    let (c_photo, c_out) = (colourfulness(photo), colourfulness(out));
    eprintln!(
        "{style}: roughness {r_out:.1} (photo {r_photo:.1}), colourfulness {c_out:.1} (photo {c_photo:.1}), \
         flat {:.2} (photo {:.2}), dark {:.2} (photo {:.2}), luma {:.0} (photo {:.0})",
        flat_neighbours(out),
        flat_neighbours(photo),
        dark_share(out, 50.0),
        dark_share(photo, 50.0),
        mean_luma(out),
        mean_luma(photo)
    );
    match style {
        // Soft washes: fine texture flattened, lighter overall.
        "watercolor" => {
            assert!(r_out < 0.7 * r_photo, "watercolor keeps texture: {r_out:.1} vs {r_photo:.1}");
            assert!(mean_luma(out) > mean_luma(photo) + 10.0, "watercolor is not lighter");
        }
        // Graphite on paper: almost no colour, mostly white.
        "pencil_sketch" => {
            assert!(c_out < 0.35 * c_photo, "a pencil sketch is not grey: {c_out:.1} vs {c_photo:.1}");
            assert!(mean_luma(out) > 200.0, "a pencil sketch is mostly paper: {:.0}", mean_luma(out));
        }
        // A 2x2 grid of panels, each in its own bold palette.
        "pop_art" => {
            let panels = quadrants(out);
            for i in 0..4 {
                for j in i + 1..4 {
                    let d = mean_abs_diff(&panels[i], &panels[j]);
                    assert!(d > 30.0, "pop art panels {i} and {j} look alike ({d:.1})");
                }
            }
            assert!(c_out > 1.5 * c_photo, "pop art is not bold: {c_out:.1} vs {c_photo:.1}");
        }
        // Strokes: the fur's fine texture is flattened.
        "oil_paint" => assert!(r_out < 0.85 * r_photo, "oil paint keeps texture: {r_out:.1} vs {r_photo:.1}"),
        // Big flat pixels.
        "pixel_art" => {
            let (f_out, f_photo) = (flat_neighbours(out), flat_neighbours(photo));
            assert!(f_out > f_photo + 0.15, "pixel art is not blocky: {f_out:.2} vs {f_photo:.2}");
        }
        // Panes joined by dark lead.
        "stained_glass" => {
            let (lead, before) = (dark_share(out, 50.0), dark_share(photo, 50.0));
            assert!((0.1..0.5).contains(&lead) && lead > before + 0.1, "lead covers {lead:.2} (photo {before:.2})");
        }
        other => panic!("no claim is checked for the style {other}; add one"),
    }
}

all_modes!(orientation_is_honoured_and_metadata_never_served, orientation_is_honoured_and_metadata_never_served);

/// A photo stored sideways with EXIF orientation 6 and GPS coordinates: the upload is
/// reported upright, stored without its metadata (the orientation in its row), the
/// portrait is upright (it matches the one made from the upright photo), and neither the
/// camera make nor any EXIF block reaches the stored or the served file.
async fn orientation_is_honoured_and_metadata_never_served(mode: Mode) {
    use petportrait_tests::fixtures::{FIXTURE_CAMERA_MAKE, chelsea_rotated_gps_jpeg};
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "100")]).await;
    let ann = app.user("Ann").await;
    let sideways = chelsea_rotated_gps_jpeg();
    assert!(sideways.windows(FIXTURE_CAMERA_MAKE.len()).any(|w| w == FIXTURE_CAMERA_MAKE), "the fixture has EXIF");
    let response = ann.upload(sideways, "sideways.jpg", "image/jpeg").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let upload: serde_json::Value = response.json().await.expect("json");
    assert_eq!((upload["width"].as_u64(), upload["height"].as_u64()), (Some(451), Some(300)), "{upload}");
    // What is stored is the picture only: no EXIF, so no GPS position and no camera;
    // the orientation lives in the upload's row.
    let prefix = format!("u/{}/uploads/", ann.user_id().await);
    let keys = app.services.store.list(&prefix).await.expect("list");
    let stored = app.services.store.get(&keys[0]).await.expect("get").expect("the upload");
    assert!(!stored.windows(FIXTURE_CAMERA_MAKE.len()).any(|w| w == FIXTURE_CAMERA_MAKE), "camera make stored");
    assert!(!stored.windows(6).any(|w| w == b"Exif\0\0"), "an EXIF block was stored");
    let row = app.services.db.get_upload(upload["id"].as_str().expect("id")).await.expect("db").expect("row");
    assert_eq!(row.orientation, Some(6));
    let upright = ann.upload_ok(chelsea_jpeg()).await;

    let mut portraits = Vec::new();
    for upload_id in [upload["id"].as_str().expect("id"), upright.as_str()] {
        let id = ann.create_portrait(upload_id, "watercolor").await["id"].as_str().expect("id").to_owned();
        let done = ann.wait_terminal(&id, Duration::from_secs(60)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let (status, bytes) = ann.download(done["outputs"][0]["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!bytes.windows(FIXTURE_CAMERA_MAKE.len()).any(|w| w == FIXTURE_CAMERA_MAKE), "camera make served");
        assert!(!bytes.windows(6).any(|w| w == b"Exif\0\0"), "an EXIF block was served");
        portraits.push(image::load_from_memory(&bytes).expect("decodes").to_rgb8());
    }
    assert_eq!(portraits[0].dimensions(), (451, 300));
    let same = mean_abs_diff(&portraits[0], &portraits[1]);
    let turned = image::imageops::rotate180(&portraits[1]);
    let upside_down = mean_abs_diff(&portraits[0], &turned);
    assert!(same < 4.0 && upside_down > 4.0 * same, "upright {same:.1}, upside down {upside_down:.1}");
    app.stop().await;
}

all_modes!(music_through_the_api, music_through_the_api);
all_modes!(sculpture_through_the_api, sculpture_through_the_api);

/// The first style the catalogue lists for a kind, which must be available.
fn first_style(catalogue: &serde_json::Value, kind: &str) -> String {
    let entry = catalogue["kinds"].as_array().expect("kinds").iter().find(|k| k["kind"] == kind).expect("the kind");
    assert_eq!(entry["available"], true, "{entry}");
    entry["styles"][0]["id"].as_str().expect("a style").to_owned()
}

/// Music from the real photo, through the API: 20–60 s of 16-bit PCM at 44.1 kHz, never
/// silent, never clipped, and another photo makes other music. Music takes no options.
async fn music_through_the_api(mode: Mode) {
    use petportrait_tests::fixtures::pet_jpeg;
    use petportrait_tests::media::read_wav;
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "100")]).await;
    let ann = app.user("Ann").await;
    let (_, catalogue) = ann.get("/v1/styles").await;
    let music = first_style(&catalogue, "music");
    let cat = ann.upload_ok(chelsea_jpeg()).await;
    let other = ann.upload_ok(pet_jpeg()).await;
    let mut tracks = Vec::new();
    for upload in [&cat, &other] {
        let id = ann.create_generation("music", upload, &music).await["id"].as_str().expect("id").to_owned();
        let done = ann.wait_terminal(&id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let output = &done["outputs"][0];
        assert_eq!(output["content_type"], "audio/wav", "{done}");
        let (status, bytes) = ann.download(output["url"].as_str().expect("url")).await;
        assert_eq!(status, StatusCode::OK);
        let wav = read_wav(&bytes).expect("a PCM WAV");
        let duration = wav.duration_seconds();
        eprintln!(
            "music: {} Hz, {} channel(s), {duration:.1} s, rms {:.3}, peak {}",
            wav.sample_rate,
            wav.channels,
            wav.rms(0.0, duration),
            wav.peak()
        );
        assert_eq!(wav.sample_rate, 44_100);
        assert!((20.0..=60.0).contains(&duration), "{duration} s");
        assert!(wav.peak() < 32_767 && wav.peak() > 8_000, "peak {}: clipped or too quiet", wav.peak());
        let mut start = 0.0;
        while start + 5.0 <= duration {
            let rms = wav.rms(start, start + 5.0);
            assert!(rms > 0.01, "silent from {start} s: rms {rms:.4}");
            start += 5.0;
        }
        tracks.push(bytes);
    }
    assert_ne!(tracks[0], tracks[1], "two different photos made the same music");

    // Music and sculptures take no options.
    let body = serde_json::json!({"kind": "music", "upload_id": cat, "style": music, "options": {"format": "png"}});
    let (status, problem) = ann.post_json("/v1/generations", &body).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_options")));
    app.stop().await;
}

/// A sculpture from the real photo, through the API: the STL is a closed,
/// outward-facing solid 100 mm long and the GLB holds the same mesh, same size (in
/// metres), with consistent accessors.
async fn sculpture_through_the_api(mode: Mode) {
    use petportrait_tests::media::{check_glb, check_stl};
    let app = TestApp::spawn(mode, &[("STARTER_CREDITS", "100")]).await;
    let ann = app.user("Ann").await;
    let (_, catalogue) = ann.get("/v1/styles").await;
    let sculpture = first_style(&catalogue, "sculpture");
    let cat = ann.upload_ok(chelsea_jpeg()).await;
    let id = ann.create_generation("sculpture", &cat, &sculpture).await["id"].as_str().expect("id").to_owned();
    let done = ann.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let outputs = done["outputs"].as_array().expect("outputs");
    let file = |content_type: &str| {
        outputs
            .iter()
            .find(|o| o["content_type"] == content_type)
            .unwrap_or_else(|| panic!("no {content_type}: {done}"))
    };
    let (status, stl) = ann.download(file("model/stl")["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, glb) = ann.download(file("model/gltf-binary")["url"].as_str().expect("url")).await;
    assert_eq!(status, StatusCode::OK);
    let solid = check_stl(&stl).expect("a watertight STL");
    let gltf = check_glb(&glb).expect("a consistent GLB");
    eprintln!(
        "sculpture: {} triangles, {:?} mm, {:.0} mm3; GLB {} triangles, {} vertices, {:?} m",
        solid.triangles, solid.size, solid.volume, gltf.triangles, gltf.vertices, gltf.size
    );
    assert_eq!(solid.triangles, gltf.triangles, "the STL and the GLB hold the same mesh");
    let longest = solid.size.iter().cloned().fold(0.0f32, f32::max);
    assert!((99.0..=101.0).contains(&longest), "the longest side is {longest} mm, not 100");
    let (mut mm, mut m) = (solid.size.map(f64::from), gltf.size.map(|s| s * 1000.0));
    mm.sort_by(f64::total_cmp);
    m.sort_by(f64::total_cmp);
    for (a, b) in mm.iter().zip(&m) {
        assert!((a - b).abs() < 0.1, "the GLB's size {m:?} mm is not the STL's {mm:?}");
    }
    // More than the 3 mm base plate under the whole print, less than its bounding box.
    let [x, y, z] = solid.size.map(f64::from);
    assert!(solid.volume > x * y * 3.0 && solid.volume < x * y * z, "volume {:.0} mm3", solid.volume);

    app.stop().await;
}
