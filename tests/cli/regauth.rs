//! Registry auth and TLS against a real Distribution 2.8: a TLS registry with its own CA, a
//! Bearer-token registry with an in-process token server (plain and over TLS), credentials from
//! auth files; each through the library's `Registry` client.

use std::path::Path;

use airlock::format::Digest;
use airlock::oci::auth::{lookup_in, parse_creds, AuthEnv};
use airlock::oci::client::{ConnectOptions, Credentials, Registry};
use base64::Engine;

use crate::registry::*;
use crate::support::*;

/// `--creds` as a user would type it (the password holds a `:` and a space).
fn token_creds() -> Credentials {
    parse_creds(&format!("{TOKEN_USER}:{TOKEN_PASS}")).unwrap()
}

fn wrong_creds() -> Credentials {
    Credentials {
        username: TOKEN_USER.into(),
        password: "tok:en".into(),
    }
}

type Blobs = Vec<(Digest, Vec<u8>)>;

/// Pushes `test/img:t` from a fresh layout to `reg` (with the token account if it has a token
/// server): (workspace, manifest, blobs).
fn populate(reg: &TestRegistry) -> (Env, Vec<u8>, Blobs) {
    let env = Env::new();
    let (layout, manifest, blobs) = build_layout(env.dir.path());
    let creds = format!("{TOKEN_USER}:{TOKEN_PASS}");
    reg.push(
        &layout,
        "test/img:t",
        reg.token.is_some().then_some(creds.as_str()),
    );
    (env, manifest, blobs)
}

/// Pulls `test/img:t` and every blob, checking the bytes against the layout.
#[track_caller]
fn pull_all(client: &Registry, manifest: &[u8], blobs: &[(Digest, Vec<u8>)]) {
    let m = client.manifest("test/img", "t").unwrap();
    assert_eq!(m.bytes, manifest);
    for (d, data) in blobs {
        let mut out = Vec::new();
        assert_eq!(
            client.blob_to("test/img", d, &mut out).unwrap(),
            data.len() as u64
        );
        assert_eq!(&out, data);
    }
}

/// What the token server was asked by airlock (the requests after skopeo's push).
fn token_requests_since(reg: &TestRegistry, skip: usize) -> Vec<TokenRequest> {
    reg.token.as_ref().unwrap().requests.lock().unwrap()[skip..].to_vec()
}

fn token_request_count(reg: &TestRegistry) -> usize {
    reg.token.as_ref().unwrap().requests.lock().unwrap().len()
}

#[test]
fn tls_registry_with_its_ca() {
    let reg = TestRegistry::start_tls();
    let (_env, manifest, blobs) = populate(&reg);
    let client = Registry::new(&reg.addr, &reg.connect_options(None)).unwrap();
    assert_eq!(client.base(), format!("https://{}", reg.addr));
    pull_all(&client, &manifest, &blobs);
    // By the DNS name in the certificate too.
    let port = reg.addr.rsplit_once(':').unwrap().1;
    let client = Registry::new(&format!("localhost:{port}"), &reg.connect_options(None)).unwrap();
    assert_eq!(client.base(), format!("https://localhost:{port}"));
    pull_all(&client, &manifest, &blobs);
}

#[test]
fn tls_registry_without_its_ca_is_refused() {
    let reg = TestRegistry::start_tls();
    let _populated = populate(&reg);
    // Nothing pulls: the certificate is not trusted, and the registry does not speak HTTP.
    let outcome = Registry::new(&reg.addr, &ConnectOptions::default())
        .and_then(|c| c.manifest("test/img", "t"));
    assert!(outcome.is_err(), "an untrusted certificate was accepted");
    // Another CA is no better.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = make_tls(other.path());
    let opts = ConnectOptions {
        ca_certs: vec![other_ca],
        ..Default::default()
    };
    let outcome = Registry::new(&reg.addr, &opts).and_then(|c| c.manifest("test/img", "t"));
    assert!(
        outcome.is_err(),
        "a certificate from another CA was accepted"
    );
}

/// Needs client.rs: on loopback hosts `Registry::new` falls back to plain HTTP whenever the
/// HTTPS probe fails, also when it failed because the certificate is untrusted; the registry
/// then answers `400` ("Client sent an HTTP request to an HTTPS server") and the message does not
/// say why. It should keep HTTPS when the TLS handshake got as far as a certificate, and report
/// the error's source chain ("invalid peer certificate: UnknownIssuer").
#[test]
fn tls_registry_without_its_ca_names_the_certificate_problem() {
    let reg = TestRegistry::start_tls();
    let _populated = populate(&reg);
    let err = Registry::new(&reg.addr, &ConnectOptions::default())
        .and_then(|c| c.manifest("test/img", "t"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("certificate") && err.contains(&format!("https://{}", reg.addr)),
        "{err}"
    );
}

#[test]
fn token_registry_with_explicit_creds() {
    let reg = TestRegistry::start_token();
    let (_env, manifest, blobs) = populate(&reg);
    let before = token_request_count(&reg);
    let client = Registry::new(&reg.addr, &reg.connect_options(Some(token_creds()))).unwrap();
    pull_all(&client, &manifest, &blobs);
    let asked = token_requests_since(&reg, before);
    assert!(!asked.is_empty());
    for r in &asked {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.user.as_deref(), Some(TOKEN_USER), "{r:?}");
        assert_eq!(
            r.service.as_deref(),
            Some(reg.token.as_ref().unwrap().service.as_str())
        );
        // Pulling asks for pull only.
        assert_eq!(r.scopes, ["repository:test/img:pull"], "{r:?}");
    }
}

fn write_auth(path: &Path, key: &str, user: &str, pass: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        format!(r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
}

#[test]
fn token_registry_with_creds_from_auth_files() {
    let reg = TestRegistry::start_token();
    let (env, manifest, blobs) = populate(&reg);
    let pull_with = |auth_env: &AuthEnv| {
        let creds = lookup_in(auth_env, &reg.addr).unwrap();
        assert!(creds.is_some(), "no credentials found in {auth_env:?}");
        let client = Registry::new(&reg.addr, &reg.connect_options(creds)).unwrap();
        pull_all(&client, &manifest, &blobs);
    };
    // podman/skopeo's file ($REGISTRY_AUTH_FILE), keyed by host:port.
    let containers = env.path("containers-auth.json");
    write_auth(&containers, &reg.addr, TOKEN_USER, TOKEN_PASS);
    pull_with(&AuthEnv {
        registry_auth_file: Some(containers),
        ..Default::default()
    });
    // docker's (~/.docker/config.json), keyed by URL.
    let home = env.path("home");
    write_auth(
        &home.join(".docker/config.json"),
        &format!("https://{}/v1/", reg.addr),
        TOKEN_USER,
        TOKEN_PASS,
    );
    let docker = AuthEnv {
        home: Some(home),
        ..Default::default()
    };
    pull_with(&docker);
    // A credential helper named by the docker file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bin = env.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let helper = bin.join("docker-credential-airlocktest");
        std::fs::write(
            &helper,
            format!(
                "#!/bin/sh\nread -r server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"Username\":\"{TOKEN_USER}\",\"Secret\":\"{TOKEN_PASS}\"}}'\n",
                reg.addr
            ),
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dc = env.path("docker-config");
        std::fs::create_dir_all(&dc).unwrap();
        std::fs::write(
            dc.join("config.json"),
            format!(r#"{{"credHelpers": {{"{}": "airlocktest"}}}}"#, reg.addr),
        )
        .unwrap();
        pull_with(&AuthEnv {
            docker_config: Some(dc),
            path: Some(bin.into_os_string()),
            ..docker
        });
    }
}

#[test]
fn token_registry_refuses_wrong_and_missing_creds() {
    let reg = TestRegistry::start_token();
    let _populated = populate(&reg);
    let realm = reg.token.as_ref().unwrap().realm.clone();
    let before = token_request_count(&reg);
    let err = Registry::new(&reg.addr, &reg.connect_options(Some(wrong_creds())))
        .unwrap()
        .manifest("test/img", "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains(&realm), "{err}");
    assert!(!err.contains("tok:en"), "the password leaked: {err}");
    let asked = token_requests_since(&reg, before);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        (asked[0].user.as_deref(), asked[0].status),
        (Some(TOKEN_USER), 401)
    );

    let before = token_request_count(&reg);
    let err = Registry::new(&reg.addr, &reg.connect_options(None))
        .unwrap()
        .manifest("test/img", "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("401") && err.contains(&realm), "{err}");
    let asked = token_requests_since(&reg, before);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!((asked[0].user.as_deref(), asked[0].status), (None, 401));
}

/// Needs client.rs: a 401 from the token server reads "token server answered 401
/// Unauthorized" whether credentials were wrong or missing. It should say "authentication
/// failed" (credentials given) or that credentials are needed (`--creds`, or `docker login` /
/// `podman login`) when none were given, as the Basic path already does.
#[test]
fn token_registry_errors_say_what_to_do() {
    let reg = TestRegistry::start_token();
    let _populated = populate(&reg);
    let err = Registry::new(&reg.addr, &reg.connect_options(Some(wrong_creds())))
        .unwrap()
        .manifest("test/img", "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication failed"), "{err}");
    let err = Registry::new(&reg.addr, &reg.connect_options(None))
        .unwrap()
        .manifest("test/img", "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("credentials"), "{err}");
}

#[test]
fn token_registry_over_tls() {
    let reg = TestRegistry::start_opts(RegistryOpts {
        tls: true,
        token: true,
        ..Default::default()
    });
    let (_env, manifest, blobs) = populate(&reg);
    let client = Registry::new(&reg.addr, &reg.connect_options(Some(token_creds()))).unwrap();
    assert!(client.base().starts_with("https://"));
    pull_all(&client, &manifest, &blobs);
}

#[test]
fn basic_auth_registry_over_tls() {
    let reg = TestRegistry::start_opts(RegistryOpts {
        htpasswd: Some(HTPASSWD),
        tls: true,
        ..Default::default()
    });
    let env = Env::new();
    let (layout, manifest, blobs) = build_layout(env.dir.path());
    reg.push(&layout, "test/img:t", Some("testuser:testpass"));
    let creds = parse_creds("testuser:testpass").unwrap();
    let client = Registry::new(&reg.addr, &reg.connect_options(Some(creds))).unwrap();
    assert!(client.base().starts_with("https://"));
    pull_all(&client, &manifest, &blobs);
}

/// The test token server is a real gate: Distribution checks the JWT's signature and grants
/// exactly the scopes it lists.
#[test]
fn test_token_server_grants_only_what_was_asked() {
    let reg = TestRegistry::start_token();
    let _populated = populate(&reg);
    let t = reg.token.as_ref().unwrap();
    let http = airlock::net::client().unwrap();
    let token_url = |scope: &str| {
        reqwest::Url::parse_with_params(
            &t.realm,
            [("service", t.service.as_str()), ("scope", scope)],
        )
        .unwrap()
    };
    let token = |scope: &str| -> String {
        let resp = http
            .get(token_url(scope))
            .basic_auth(TOKEN_USER, Some(TOKEN_PASS))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
        assert_eq!(v["token"], v["access_token"]);
        assert_eq!(v["expires_in"], 300);
        v["token"].as_str().unwrap().to_string()
    };
    let base = format!("http://{}", reg.addr);
    let pull = token("repository:test/img:pull");
    let get = |tok: &str, path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(tok)
            .header("Accept", airlock::oci::client::MANIFEST_ACCEPT)
            .send()
            .unwrap()
    };
    assert_eq!(get(&pull, "/v2/test/img/manifests/t").status(), 200);
    // Not for another repository...
    assert_eq!(get(&pull, "/v2/other/img/manifests/t").status(), 401);
    // ...nor for pushing.
    let resp = http
        .post(format!("{base}/v2/test/img/blobs/uploads/"))
        .bearer_auth(&pull)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    // A token with a tampered signature is refused.
    let sig = pull.rfind('.').unwrap() + 1;
    let flipped = if pull[sig..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{flipped}{}", &pull[..sig], &pull[sig + 1..]);
    assert_eq!(get(&forged, "/v2/test/img/manifests/t").status(), 401);
    // Anonymous token requests are refused.
    let resp = http
        .get(token_url("repository:test/img:pull"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
}
