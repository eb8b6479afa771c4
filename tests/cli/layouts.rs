//! Image sources from local files (OCI layout directories, `docker save` archives) and the OCI
//! layout target, checked with skopeo and a real docker-registry (library level).

use std::fs::{self, File};

use std::path::{Path, PathBuf};

use airlock::bundle::{self, OutDir, PackOptions, PlannedBlob, VerifyOptions};
use airlock::format::Digest;
use airlock::oci::image::{collect, CollectedImage, Origin, PlatformChoice};
use airlock::oci::model::{Descriptor, Platform};
use airlock::oci::{archive, layout};
use airlock::progress::Silent;
use airlock::sign::{PublicKey, SigningKey};
use airlock::stage::Admitted;
use airlock::targets::oci_layout::{self, BlobAction, LayoutPlan, RefAction};
use airlock::Error;

use crate::registry::{build_layout, TestRegistry};
use crate::support::*;

/// Packs `images` into a signed bundle, admits it, then plans and executes an import of them into
/// the layout `dest` under the names given.
fn import(dest: &Path, images: &[(&str, &CollectedImage)]) -> airlock::Result<LayoutPlan> {
    let env = Env::new();
    env.keygen("k");
    let key = SigningKey::load(&env.path("k")).unwrap();
    let mut artifacts = Vec::new();
    let mut blobs: Vec<PlannedBlob> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, (name, img)) in images.iter().enumerate() {
        let (a, needed) =
            airlock::sources::image::to_artifact((*img).clone(), name, Some(&format!("img{i}")));
        artifacts.push(a);
        blobs.extend(needed.into_iter().filter(|b| seen.insert(b.digest)));
    }
    let opts = PackOptions {
        channel: "t".into(),
        sequence: 1,
        created: std::time::SystemTime::now(),
        expires: None,
        chunk_size: 1 << 20,
        volumes: None,
    };
    let out = env.path("b");
    bundle::pack(
        OutDir::prepare(&out)?,
        artifacts,
        &blobs,
        &[key],
        &opts,
        &Silent,
    )?;
    let trust = PublicKey::load(env.path("k.pub").to_str().unwrap()).unwrap();
    let now = VerifyOptions {
        now: std::time::SystemTime::now(),
    };
    let adm = Admitted::without_state(bundle::verify(&out, &[trust], &now, &Silent)?);
    let tops: Vec<(String, Descriptor)> = images
        .iter()
        .map(|(n, i)| (n.to_string(), i.top.clone()))
        .collect();
    let plan = oci_layout::plan(dest, &tops, &adm)?;
    oci_layout::execute(&adm, &plan, &Silent)?;
    Ok(plan)
}

/// `skopeo inspect --raw` of `oci:LAYOUT:NAME`, as text (manifests are JSON; diffs stay readable).
fn inspect_raw(layout: &Path, name: &str) -> String {
    text(skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:{name}", layout.display()),
    ]))
}

fn text(b: impl AsRef<[u8]>) -> String {
    String::from_utf8(b.as_ref().to_vec()).expect("JSON is UTF-8")
}

fn open_layout(path: &Path, tag: Option<&str>) -> airlock::Result<CollectedImage> {
    let o = layout::open(path, tag)?;
    collect(
        &o.store,
        &o.reference,
        o.top,
        o.top_bytes,
        &PlatformChoice::All,
    )
}

fn write_blob(layout: &Path, data: &[u8]) -> (Digest, usize) {
    let d = Digest::of(data);
    let p = layout.join("blobs/sha256").join(d.hex());
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
    (d, data.len())
}

/// `build_layout` plus an arm64 image sharing its layer and an index over both, tagged `multi`
/// (and `t` still the amd64 image). Returns (layout, index bytes, amd64 manifest, arm64 manifest).
fn build_multi(root: &Path) -> (PathBuf, Vec<u8>, Vec<u8>, Vec<u8>) {
    let (lay, amd64, blobs) = build_layout(root);
    let (layer_d, layer) = &blobs[1];
    let config = format!(
        r#"{{"architecture":"arm64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_d}"]}},"config":{{}}}}"#
    );
    let (cd, cs) = write_blob(&lay, config.as_bytes());
    let arm64 = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_d}","size":{}}}]}}"#,
        layer.len()
    )
    .into_bytes();
    let (ad, asz) = write_blob(&lay, &amd64);
    let (rd, rsz) = write_blob(&lay, &arm64);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{ad}","size":{asz},"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{rd}","size":{rsz},"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#
    )
    .into_bytes();
    let (id, isz) = write_blob(&lay, &index);
    fs::write(
        lay.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{ad}","size":{asz},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}},{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{id}","size":{isz},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#
        ),
    )
    .unwrap();
    (lay, index, amd64, arm64)
}

#[test]
fn layout_round_trip_is_byte_identical_and_skopeo_reads_it() {
    let env = Env::new();
    let (lay, manifest, blobs) = build_layout(env.dir.path());
    let (path, tag) = layout::split_location(&format!("{}:t", lay.display()), true).unwrap();
    assert_eq!((path.as_path(), tag.as_deref()), (lay.as_path(), Some("t")));
    let img = open_layout(&path, tag.as_deref()).unwrap();
    assert_eq!(img.reference, format!("oci-layout:{}:t", lay.display()));
    assert_eq!(img.top.digest, Digest::of(&manifest));
    assert_eq!(img.blobs.len(), 3, "config, layer, manifest");
    // Layers come as file ranges, not in memory.
    let layer = img.blobs.iter().find(|b| b.digest == blobs[1].0).unwrap();
    assert!(matches!(layer.origin, Origin::File { offset: 0, .. }));

    let new = env.path("new");
    let plan = import(&new, &[("app-1.0", &img)]).unwrap();
    assert!(plan.create_layout_file);
    assert_eq!(plan.blobs_to_write(), 3);
    assert_eq!(plan.refs[0].action, RefAction::Add);
    assert_eq!(inspect_raw(&new, "app-1.0"), text(&manifest));
    for (d, data) in &blobs {
        assert_eq!(
            &fs::read(new.join("blobs/sha256").join(d.hex())).unwrap(),
            data
        );
    }
    let other = env.path("other");
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        &format!("oci:{}:app-1.0", new.display()),
        &format!("oci:{}:x", other.display()),
    ]);
    assert_eq!(inspect_raw(&other, "x"), text(&manifest));

    // The result is itself a layout source, and re-importing is a no-op.
    let again = open_layout(&new, Some("app-1.0")).unwrap();
    assert_eq!(again.top.digest, img.top.digest);
    let before = contents(&new);
    let plan = import(&new, &[("app-1.0", &img)]).unwrap();
    assert!(plan.is_noop(), "{plan:?}");
    assert_eq!(contents(&new), before);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["refs"][0]["action"], "keep");
    assert_eq!(json["blobs"][0]["action"], "keep");
}

#[test]
fn multi_arch_index_whole_or_one_platform() {
    let env = Env::new();
    let (lay, index, amd64, _arm64) = build_multi(env.dir.path());
    let o = layout::open(&lay, Some("multi")).unwrap();
    let only = PlatformChoice::Only(vec![Platform::parse("linux/amd64").unwrap()]);
    let one = collect(&o.store, &o.reference, o.top, o.top_bytes, &only).unwrap();
    assert_eq!(one.top.digest, Digest::of(&amd64));
    assert_eq!(one.platforms, vec!["linux/amd64".to_string()]);
    assert_eq!(one.blobs.len(), 3);

    let all = open_layout(&lay, Some("multi")).unwrap();
    assert_eq!(all.top.digest, Digest::of(&index));
    assert_eq!(
        all.blobs.len(),
        6,
        "one shared layer, two configs, three manifests"
    );

    let new = env.path("new");
    import(&new, &[("amd", &one), ("multi", &all)]).unwrap();
    assert_eq!(inspect_raw(&new, "amd"), text(&amd64));
    assert_eq!(inspect_raw(&new, "multi"), text(&index));
    let other = env.path("other");
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--preserve-digests",
        &format!("oci:{}:multi", new.display()),
        &format!("oci:{}:x", other.display()),
    ]);
    assert_eq!(inspect_raw(&other, "x"), text(&index));
}

#[test]
fn tags_select_and_a_missing_tag_lists_the_names() {
    let env = Env::new();
    let (lay, _, amd64, _) = build_multi(env.dir.path());
    let err = layout::open(&lay, None).unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("2 images") && msg.contains("t, multi") && msg.contains(":TAG"),
        "{msg}"
    );
    let msg = layout::open(&lay, Some("nope")).unwrap_err().to_string();
    assert!(
        msg.contains("\"nope\"") && msg.contains("available: t, multi"),
        "{msg}"
    );
    assert_eq!(
        layout::open(&lay, Some("t")).unwrap().top_bytes,
        amd64,
        "selected by its ref name"
    );

    // A path containing ':' and a ref name that is a full reference.
    let odd = env.path("lay:out");
    fs::rename(&lay, &odd).unwrap();
    let idx = fs::read_to_string(odd.join("index.json"))
        .unwrap()
        .replace("\"t\"", "\"docker.io/library/nginx:1.27\"");
    fs::write(odd.join("index.json"), idx).unwrap();
    let (p, tag) = layout::split_location(
        &format!("{}:docker.io/library/nginx:1.27", odd.display()),
        true,
    )
    .unwrap();
    assert_eq!(p, odd);
    let o = layout::open(&p, tag.as_deref()).unwrap();
    assert_eq!(o.reference, "docker.io/library/nginx:1.27");
    // Docker's short form names the same image.
    let o = layout::open(&p, Some("nginx:1.27")).unwrap();
    assert_eq!(o.top_bytes, amd64);
    assert!(o.top.annotations.is_empty(), "the ref name is not carried");
    assert!(layout::split_location(&format!("{}x:t", odd.display()), true).is_err());
}

#[test]
fn docker_archive_from_skopeo_round_trips_into_a_registry() {
    let env = Env::new();
    let (lay, _, blobs) = build_layout(env.dir.path());
    let tar = env.path("x.tar");
    skopeo(&[
        "copy",
        "--quiet",
        &format!("oci:{}:t", lay.display()),
        &format!("docker-archive:{}:example.com/app:1.0", tar.display()),
    ]);
    let (file, r) =
        layout::split_location(&format!("{}:example.com/app:1.0", tar.display()), false).unwrap();
    assert_eq!(
        (file.as_path(), r.as_deref()),
        (tar.as_path(), Some("example.com/app:1.0"))
    );
    let o = archive::open(&file, r.as_deref()).unwrap();
    assert_eq!(o.reference, "example.com/app:1.0");
    // Deterministic: the same archive gives the same manifest; the only image is the default.
    let o2 = archive::open(&file, None).unwrap();
    assert_eq!(o2.top_bytes, o.top_bytes);
    assert_eq!(
        o.top.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    let msg = archive::open(&file, Some("example.com/app:2.0"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("available: example.com/app:1.0"), "{msg}");

    let img = collect(
        &o.store,
        &o.reference,
        o.top,
        o.top_bytes.clone(),
        &PlatformChoice::All,
    )
    .unwrap();
    // Config and layer keep their digests (the config bytes and the uncompressed layer tar).
    for (d, _) in &blobs {
        let b = img.blobs.iter().find(|b| b.digest == *d).unwrap();
        assert!(
            matches!(&b.origin, Origin::File { path, offset } if path == &tar && *offset > 0),
            "{b:?}"
        );
    }
    let new = env.path("new");
    import(&new, &[("app", &img)]).unwrap();
    assert_eq!(inspect_raw(&new, "app"), text(&o.top_bytes));

    let reg = TestRegistry::start();
    let dest = format!("docker://{}/test/app:1.0", reg.addr);
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:app", new.display()),
        &dest,
    ]);
    assert_eq!(
        text(skopeo(&["inspect", "--raw", "--tls-verify=false", &dest])),
        text(&o.top_bytes),
        "the registry accepted and stores the synthesised manifest as is"
    );
}

/// A tar as docker ≥ 25 `docker save` writes it: an OCI layout plus `manifest.json`.
fn oci_in_tar(lay: &Path, out: &Path) {
    let mut b = tar::Builder::new(File::create(out).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let idx = fs::read_to_string(lay.join("index.json")).unwrap().replace(
        r#""org.opencontainers.image.ref.name":"t""#,
        r#""io.containerd.image.name":"example.com/app:1.0","org.opencontainers.image.ref.name":"1.0""#,
    );
    add("index.json", idx.as_bytes());
    add("oci-layout", &fs::read(lay.join("oci-layout")).unwrap());
    add("manifest.json", b"[]");
    let mut names: Vec<_> = fs::read_dir(lay.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for n in names {
        add(
            &format!("blobs/sha256/{n}"),
            &fs::read(lay.join("blobs/sha256").join(&n)).unwrap(),
        );
    }
    b.into_inner().unwrap();
}

#[test]
fn oci_layout_inside_a_docker_archive() {
    let env = Env::new();
    let (lay, manifest, blobs) = build_layout(env.dir.path());
    let tar = env.path("oci.tar");
    oci_in_tar(&lay, &tar);
    for r in [None, Some("example.com/app:1.0"), Some("1.0")] {
        let o = archive::open(&tar, r).unwrap();
        assert_eq!(o.reference, "example.com/app:1.0");
        assert_eq!(
            o.top_bytes, manifest,
            "the stored manifest, not a synthesised one"
        );
    }
    let msg = archive::open(&tar, Some("2.0")).unwrap_err().to_string();
    assert!(msg.contains("available: example.com/app:1.0"), "{msg}");
    let o = archive::open(&tar, None).unwrap();
    let img = collect(
        &o.store,
        &o.reference,
        o.top,
        o.top_bytes,
        &PlatformChoice::All,
    )
    .unwrap();
    let new = env.path("new");
    import(&new, &[("example.com/app:1.0", &img)]).unwrap();
    assert_eq!(inspect_raw(&new, "example.com/app:1.0"), text(&manifest));
    for (d, data) in &blobs {
        assert_eq!(
            &fs::read(new.join("blobs/sha256").join(d.hex())).unwrap(),
            data
        );
    }
}

#[test]
fn hostile_layouts_are_refused_naming_the_digest() {
    let env = Env::new();
    let (lay, manifest, blobs) = build_layout(env.dir.path());
    let blob_path = |d: &Digest| lay.join("blobs/sha256").join(d.hex());

    // A manifest whose bytes do not hash to its name.
    let md = Digest::of(&manifest);
    let mut bad = manifest.clone();
    bad[10] ^= 1;
    fs::write(blob_path(&md), &bad).unwrap();
    match layout::open(&lay, Some("t")) {
        Err(e @ Error::DigestMismatch { .. }) => {
            assert!(e.to_string().contains(&md.to_string()), "{e}")
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    fs::write(blob_path(&md), &manifest).unwrap();

    // A layer with the right size and wrong bytes: caught while it is copied, nothing left.
    let (ld, layer) = &blobs[1];
    let mut bad = layer.clone();
    bad[1000] ^= 1;
    fs::write(blob_path(ld), &bad).unwrap();
    let img = open_layout(&lay, Some("t")).unwrap();
    let new = env.path("new");
    let err = import(&new, &[("t", &img)]).unwrap_err();
    assert!(err.to_string().contains(&ld.to_string()), "{err}");
    assert!(!new.join("blobs/sha256").join(ld.hex()).exists());
    assert!(
        !new.join("index.json").exists(),
        "no index naming a missing blob"
    );
    // Nothing at all is left, not even a temp file or the directories the import created.
    assert!(
        !new.exists(),
        "a failed import into a new layout left {:?}",
        contents(&new).keys().collect::<Vec<_>>()
    );

    // A wrong size is refused when collecting.
    fs::write(blob_path(ld), &layer[1..]).unwrap();
    let msg = open_layout(&lay, Some("t")).unwrap_err().to_string();
    assert!(
        msg.contains(&ld.to_string()) && msg.contains("bytes"),
        "{msg}"
    );

    // A blob that is a link out of the layout, and one that is a directory.
    let outside = env.write("outside", layer);
    fs::remove_file(blob_path(ld)).unwrap();
    std::os::unix::fs::symlink(&outside, blob_path(ld)).unwrap();
    let msg = open_layout(&lay, Some("t")).unwrap_err().to_string();
    assert!(
        msg.contains("outside the layout") && msg.contains(&ld.to_string()),
        "{msg}"
    );
    fs::remove_file(blob_path(ld)).unwrap();
    fs::create_dir(blob_path(ld)).unwrap();
    let msg = open_layout(&lay, Some("t")).unwrap_err().to_string();
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[test]
fn target_merges_into_an_existing_layout() {
    let env = Env::new();
    let (lay, _, amd64, arm64) = build_multi(env.dir.path());
    let o = layout::open(&lay, Some("multi")).unwrap();
    let arm = PlatformChoice::Only(vec![Platform::parse("linux/arm64").unwrap()]);
    let arm_img = collect(&o.store, &o.reference, o.top, o.top_bytes, &arm).unwrap();
    assert_eq!(arm_img.top.digest, Digest::of(&arm64));

    // The destination: the single-image layout (`t` = amd64) with an extra field in index.json.
    let dest = env.path("dest");
    let (single, _, _) = build_layout(&env.path("single"));
    fs::rename(&single, &dest).unwrap();
    let idx = fs::read_to_string(dest.join("index.json"))
        .unwrap()
        .replacen('{', r#"{"annotations":{"keep":"me"},"#, 1);
    fs::write(dest.join("index.json"), idx).unwrap();

    let plan = import(&dest, &[("arm", &arm_img)]).unwrap();
    assert!(!plan.create_layout_file);
    assert_eq!(plan.refs[0].action, RefAction::Add);
    // The shared layer is already there and verified.
    assert_eq!(
        plan.blobs
            .iter()
            .filter(|b| b.action == BlobAction::Keep)
            .count(),
        1
    );
    assert_eq!(inspect_raw(&dest, "t"), text(&amd64));
    assert_eq!(inspect_raw(&dest, "arm"), text(&arm64));

    // Same name, other image: replaced in place; other names kept.
    let plan = import(&dest, &[("t", &arm_img)]).unwrap();
    assert_eq!(plan.refs[0].action, RefAction::Replace);
    assert_eq!(plan.refs[0].replaces, Some(Digest::of(&amd64)));
    assert_eq!(plan.blobs_to_write(), 0);
    assert_eq!(inspect_raw(&dest, "t"), text(&arm64));
    assert_eq!(inspect_raw(&dest, "arm"), text(&arm64));
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(v["annotations"]["keep"], "me");

    let before = contents(&dest);
    assert!(import(&dest, &[("t", &arm_img), ("arm", &arm_img)])
        .unwrap()
        .is_noop());
    assert_eq!(contents(&dest), before);
}

#[test]
fn a_conflicting_existing_blob_stops_before_any_write() {
    let env = Env::new();
    let (lay, _, blobs) = build_layout(env.dir.path());
    let img = open_layout(&lay, Some("t")).unwrap();
    let dest = env.path("dest");
    let (cd, config) = &blobs[0];
    // Same size, other bytes.
    let mut other = config.clone();
    other[0] = b' ';
    env.write(&format!("dest/blobs/sha256/{}", cd.hex()), &other);
    env.write("dest/oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
    let before = contents(&dest);
    let err = import(&dest, &[("t", &img)]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert!(err.to_string().contains(&cd.to_string()), "{err}");
    assert_eq!(contents(&dest), before, "nothing written");

    // Another size; and a layout of another version.
    env.write(&format!("dest/blobs/sha256/{}", cd.hex()), b"short");
    let err = import(&dest, &[("t", &img)]).unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)) && err.to_string().contains(&cd.to_string()),
        "{err:?}"
    );
    fs::remove_file(dest.join("blobs/sha256").join(cd.hex())).unwrap();
    env.write("dest/oci-layout", br#"{"imageLayoutVersion": "2.0.0"}"#);
    let before = contents(&dest);
    let err = import(&dest, &[("t", &img)]).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    assert_eq!(contents(&dest), before);
    // Names must fit the layout grammar.
    let err = import(&env.path("fresh"), &[("bad name", &img)]).unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
    assert!(!env.path("fresh").exists());
}

/// A legacy `docker save` tar built by hand: `<id>/layer.tar` is a symbolic link to the layer
/// (as older docker versions and skopeo write duplicates), plus whatever `extra` members.
fn legacy_tar(out: &Path, config: &[u8], layer: &[u8], layer_member: &str, extra: &[(&str, &str)]) {
    let mut b = tar::Builder::new(File::create(out).unwrap());
    let file = |b: &mut tar::Builder<File>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, data).unwrap();
    };
    let link = |b: &mut tar::Builder<File>, name: &str, target: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, name, target).unwrap();
    };
    let cd = Digest::of(config);
    file(&mut b, &format!("{}.json", cd.hex()), config);
    file(&mut b, "real/layer.tar", layer);
    link(&mut b, "abc/layer.tar", "../real/layer.tar");
    for (name, target) in extra {
        link(&mut b, name, target);
    }
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["busybox:1.36","example.com/other:2"],"Layers":["{layer_member}"]}}]"#,
        cd.hex()
    );
    file(&mut b, "manifest.json", manifest.as_bytes());
    b.into_inner().unwrap();
}

#[test]
fn legacy_archives_follow_links_inside_the_archive_only() {
    let env = Env::new();
    let (_, _, blobs) = build_layout(env.dir.path());
    let ((cd, config), (ld, layer)) = (&blobs[0], &blobs[1]);
    let tar = env.path("links.tar");
    legacy_tar(
        &tar,
        config,
        layer,
        "abc/layer.tar",
        &[("evil/layer.tar", "../../outside.tar")],
    );
    // The first RepoTag, normalised; any RepoTag selects, in either spelling.
    for r in [
        None,
        Some("docker.io/library/busybox:1.36"),
        Some("example.com/other:2"),
    ] {
        assert_eq!(
            archive::open(&tar, r).unwrap().reference,
            "docker.io/library/busybox:1.36"
        );
    }
    // The image id (config digest) selects too.
    archive::open(&tar, Some(&cd.to_string())).unwrap();
    let o = archive::open(&tar, None).unwrap();
    let img = collect(
        &o.store,
        &o.reference,
        o.top,
        o.top_bytes.clone(),
        &PlatformChoice::All,
    )
    .unwrap();
    let new = env.path("new");
    import(&new, &[("busybox:1.36", &img)]).unwrap();
    assert_eq!(
        fs::read(new.join("blobs/sha256").join(ld.hex())).unwrap(),
        *layer
    );
    assert_eq!(inspect_raw(&new, "busybox:1.36"), text(&o.top_bytes));

    // A layer member that is a link leading out of the archive.
    legacy_tar(
        &tar,
        config,
        layer,
        "evil/layer.tar",
        &[("evil/layer.tar", "../../outside.tar")],
    );
    let msg = archive::open(&tar, None).unwrap_err().to_string();
    assert!(
        msg.contains("evil/layer.tar") && msg.contains("outside"),
        "{msg}"
    );

    // A layer that does not hash to its diff_id: caught while copying, naming the digest.
    let mut bad = layer.clone();
    bad[1000] ^= 1;
    legacy_tar(&tar, config, &bad, "abc/layer.tar", &[]);
    let o = archive::open(&tar, None).unwrap();
    let img = collect(
        &o.store,
        &o.reference,
        o.top,
        o.top_bytes,
        &PlatformChoice::All,
    )
    .unwrap();
    let err = import(&env.path("new2"), &[("x", &img)]).unwrap_err();
    assert!(err.to_string().contains(&ld.to_string()), "{err}");
}
