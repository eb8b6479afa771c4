//! Tests of the credential lookup: file order and precedence, keys, malformed files, helpers.

use super::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn env_with(dir: &Path) -> AuthEnv {
    AuthEnv {
        path: Some(OsString::new()),
        home: Some(dir.join("home")),
        ..Default::default()
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn auth_json(key: &str, user: &str, pass: &str) -> String {
    format!(
        r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#,
        B64.encode(format!("{user}:{pass}"))
    )
}

fn creds(c: Option<Credentials>) -> Option<(String, String)> {
    c.map(|c| (c.username, c.password))
}

fn pair(u: &str, p: &str) -> Option<(String, String)> {
    Some((u.into(), p.into()))
}

#[test]
fn parse_creds_splits_at_the_first_colon() {
    let c = parse_creds("user:pa:ss:").unwrap();
    assert_eq!(
        (c.username.as_str(), c.password.as_str()),
        ("user", "pa:ss:")
    );
    let c = parse_creds("user:").unwrap();
    assert_eq!(c.password, "");
    for bad in ["nocolon-secret", ":secret", ""] {
        let e = parse_creds(bad).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e:?}");
        assert!(e.to_string().contains("USER:PASSWORD"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
    assert!(!format!("{:?}", parse_creds("u:hunter2").unwrap()).contains("hunter2"));
}

#[test]
fn file_order_and_precedence() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let mut env = env_with(d);
    // Nothing anywhere: None, not an error.
    assert!(lookup_in(&env, "r.example:5000").unwrap().is_none());
    // ~/.docker/config.json
    write(
        &d.join("home/.docker/config.json"),
        &auth_json("r.example:5000", "home", "h"),
    );
    assert_eq!(
        creds(lookup_in(&env, "r.example:5000").unwrap()),
        pair("home", "h")
    );
    // $DOCKER_CONFIG replaces ~/.docker.
    env.docker_config = Some(d.join("dc"));
    assert!(lookup_in(&env, "r.example:5000").unwrap().is_none());
    write(
        &d.join("dc/config.json"),
        &auth_json("r.example:5000", "dc", "d"),
    );
    assert_eq!(
        creds(lookup_in(&env, "r.example:5000").unwrap()),
        pair("dc", "d")
    );
    // The containers file comes first...
    env.xdg_runtime_dir = Some(d.join("run"));
    write(
        &d.join("run/containers/auth.json"),
        &auth_json("r.example:5000", "xdg", "x"),
    );
    assert_eq!(
        creds(lookup_in(&env, "r.example:5000").unwrap()),
        pair("xdg", "x")
    );
    // ...but only for hosts it has: others fall through to the docker file.
    write(
        &d.join("dc/config.json"),
        r#"{"auths": {"other.example": {"username": "o", "password": "p"}, "r.example:5000": {"auth": "ZGM6ZA=="}}}"#,
    );
    assert_eq!(
        creds(lookup_in(&env, "other.example").unwrap()),
        pair("o", "p")
    );
    // $REGISTRY_AUTH_FILE replaces the XDG file.
    env.registry_auth_file = Some(d.join("explicit.json"));
    assert_eq!(
        creds(lookup_in(&env, "r.example:5000").unwrap()),
        pair("dc", "d")
    );
    write(
        &d.join("explicit.json"),
        &auth_json("https://r.example:5000/v1/", "raf", "r:a:f"),
    );
    assert_eq!(
        creds(lookup_in(&env, "r.example:5000").unwrap()),
        pair("raf", "r:a:f")
    );
    assert_eq!(
        env.auth_files(),
        vec![d.join("explicit.json"), d.join("dc/config.json")]
    );
    // A port is part of the host: no match for another port or none.
    assert!(lookup_in(&env, "r.example").unwrap().is_none());
}

#[test]
fn url_keys_and_docker_hub_aliases() {
    let t = tempfile::tempdir().unwrap();
    let mut env = env_with(t.path());
    let f = t.path().join("auth.json");
    env.registry_auth_file = Some(f.clone());
    write(&f, &auth_json("https://index.docker.io/v1/", "hub", "pw"));
    for h in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
        assert_eq!(creds(lookup_in(&env, h).unwrap()), pair("hub", "pw"), "{h}");
    }
    assert!(lookup_in(&env, "quay.io").unwrap().is_none());
    write(&f, &auth_json("docker.io", "hub2", "pw"));
    assert_eq!(
        creds(lookup_in(&env, "registry-1.docker.io").unwrap()),
        pair("hub2", "pw")
    );
    write(&f, &auth_json("http://Reg.Example:443/v2/", "u", "p"));
    assert_eq!(
        creds(lookup_in(&env, "reg.example:443").unwrap()),
        pair("u", "p")
    );
    assert!(lookup_in(&env, "reg.example").unwrap().is_none());
    // An exact key beats a URL-form key for the same host.
    write(
        &f,
        r#"{"auths": {"https://h.example/v1/": {"username": "url", "password": "1"}, "h.example": {"username": "exact", "password": "2"}}}"#,
    );
    assert_eq!(
        creds(lookup_in(&env, "h.example").unwrap()),
        pair("exact", "2")
    );
}

#[test]
fn malformed_files_name_the_file_and_never_the_secret() {
    let t = tempfile::tempdir().unwrap();
    let mut env = env_with(t.path());
    let f = t.path().join("auth.json");
    env.registry_auth_file = Some(f.clone());
    let cases = [
        r#"{"auths": {"h": {"auth": "s3cr3t-not-base64!!"}}}"#.to_string(),
        format!(
            r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#,
            B64.encode("s3cr3t")
        ),
        r#"{"auths": {"h": {"password": "s3cr3t"}}}"#.to_string(),
        r#"{"auths": {"h": {"auth": 12}}, "x": "s3cr3t"}"#.to_string(),
        r#"{"auths": "s3cr3t"}"#.to_string(),
        r#"{"auths": {"h": "s3cr3t"}}"#.to_string(),
        r#"{"auths": {"h": {"auth": "s3cr3t"#.to_string(),
        r#"["s3cr3t"]"#.to_string(),
        r#"{"credHelpers": {"h": 5}, "p": "s3cr3t"}"#.to_string(),
    ];
    for text in cases {
        write(&f, &text);
        let e = lookup_in(&env, "h").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&f.display().to_string()), "{text}: {msg}");
        assert!(!msg.contains("s3cr3t"), "{text}: {msg}");
        assert!(!format!("{e:?}").contains("s3cr3t"), "{text}: {e:?}");
    }
    // Placeholders and unrelated entries are not errors.
    write(&f, r#"{"auths": {"h": {}, "other": {"auth": "!!"}}}"#);
    assert!(lookup_in(&env, "h").unwrap().is_none());
    // An unreadable path (a directory) is an I/O error naming it.
    std::fs::remove_file(&f).unwrap();
    std::fs::create_dir(&f).unwrap();
    let e = lookup_in(&env, "h").unwrap_err();
    assert!(e.to_string().contains(&f.display().to_string()), "{e}");
}

#[test]
fn identity_tokens_are_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let mut env = env_with(t.path());
    let f = t.path().join("auth.json");
    env.registry_auth_file = Some(f.clone());
    write(&f, r#"{"auths": {"h": {"identitytoken": "s3cr3t"}}}"#);
    let e = lookup_in(&env, "h").unwrap_err().to_string();
    assert!(e.contains("identity token") && e.contains("--creds"), "{e}");
    assert!(!e.contains("s3cr3t"), "{e}");
}

#[cfg(unix)]
fn helper(dir: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(format!("docker-credential-{name}"));
    write(&p, &format!("#!/bin/sh\n{script}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(unix)]
#[test]
fn credential_helpers() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Echoes the server URL it was asked about as the user name; knows only two servers.
    helper(
        &bin,
        "test",
        r#"[ "$1" = get ] || exit 2
read -r server
case "$server" in
  reg.example:5000|https://index.docker.io/v1/) printf '{"ServerURL":"%s","Username":"%s","Secret":"p:w"}' "$server" "$server" ;;
  tok.example) printf '{"ServerURL":"tok.example","Username":"<token>","Secret":"s3cr3t"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
    );
    helper(&bin, "broken", "echo 'store locked'; exit 3");
    let mut env = env_with(t.path());
    env.path = Some(std::env::join_paths([t.path().join("nowhere"), bin.clone()]).unwrap());
    let f = t.path().join("auth.json");
    env.registry_auth_file = Some(f.clone());

    // credsStore for everything.
    write(
        &f,
        r#"{"auths": {"reg.example:5000": {}}, "credsStore": "test"}"#,
    );
    assert_eq!(
        creds(lookup_in(&env, "reg.example:5000").unwrap()),
        pair("reg.example:5000", "p:w")
    );
    assert_eq!(
        creds(lookup_in(&env, "index.docker.io").unwrap()),
        pair("https://index.docker.io/v1/", "p:w")
    );
    assert!(lookup_in(&env, "unknown.example").unwrap().is_none());
    let e = lookup_in(&env, "tok.example").unwrap_err().to_string();
    assert!(e.contains("identity token") && !e.contains("s3cr3t"), "{e}");

    // credHelpers beat inline auths and credsStore; inline auths beat credsStore.
    write(
        &f,
        &format!(
            r#"{{"auths": {{"reg.example:5000": {{"auth": "{}"}}, "inline.example": {{"auth": "{}"}}}},
                   "credHelpers": {{"reg.example:5000": "test", "gone.example": "missing"}},
                   "credsStore": "broken"}}"#,
            B64.encode("inline:x"),
            B64.encode("in:line")
        ),
    );
    assert_eq!(
        creds(lookup_in(&env, "reg.example:5000").unwrap()),
        pair("reg.example:5000", "p:w")
    );
    assert_eq!(
        creds(lookup_in(&env, "inline.example").unwrap()),
        pair("in", "line")
    );
    // A helper that fails: its message, the helper's and the file's names.
    let e = lookup_in(&env, "x.example").unwrap_err().to_string();
    assert!(
        e.contains("docker-credential-broken")
            && e.contains("store locked")
            && e.contains(&f.display().to_string()),
        "{e}"
    );
    // A helper that is not installed: named.
    let e = lookup_in(&env, "gone.example").unwrap_err().to_string();
    assert!(
        e.contains("docker-credential-missing") && e.contains("not found"),
        "{e}"
    );
    // A path-like helper name is refused, not run.
    write(&f, r#"{"credsStore": "../../bin/sh"}"#);
    assert!(lookup_in(&env, "x.example")
        .unwrap_err()
        .to_string()
        .contains("not a plain name"));
}
