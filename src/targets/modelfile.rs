//! The Modelfile generator for Ollama models in a models directory: `FROM ./model.gguf`,
//! `ADAPTER`, `TEMPLATE`, `SYSTEM`, `PARAMETER`, `LICENSE`, `MESSAGE`…, each value written by
//! ollama's own grammar ([`quote`]) or the import refused; and the names each layer gets in
//! the directory ([`layer_names`]).

use std::collections::HashMap;
use std::io::Read;

use super::ollama::{Layer, OllamaModel};
use crate::error::{Error, Result};
use crate::format::json;
use crate::oci::image::BlobSource;

/// The file name of each kind of Ollama layer (without numbering).
fn layer_file(media_type: &str) -> Option<(&'static str, &'static str)> {
    let kind = media_type.strip_prefix(crate::oci::ollama::LAYER_PREFIX)?;
    Some(match kind {
        "model" => ("model", ".gguf"),
        "projector" => ("projector", ".gguf"),
        "adapter" => ("adapter", ".gguf"),
        "template" | "prompt" => ("template", ""),
        "system" => ("system", ""),
        "params" => ("params", ".json"),
        "messages" => ("messages", ".json"),
        "license" => ("license", ""),
        _ => return None,
    })
}

/// Largest text layer read to generate a Modelfile.
const MAX_TEXT: u64 = 16 << 20;

/// A layer's text: `Err` when reading the bundle fails, `Ok(Err(why))` when the bytes are not
/// text a Modelfile can hold (larger than [`MAX_TEXT`], not UTF-8).
fn try_read_text(src: &dyn BlobSource, l: &Layer) -> Result<std::result::Result<String, String>> {
    let mut v = Vec::new();
    src.open(&l.digest)?
        .take(MAX_TEXT + 1)
        .read_to_end(&mut v)
        .map_err(|e| {
            Error::blob_read(format_args!("reading {} ({})", l.digest, l.media_type), e)
        })?;
    if v.len() as u64 > MAX_TEXT {
        return Ok(Err(format!(
            "{} layer {} is larger than {MAX_TEXT} bytes",
            l.media_type, l.digest
        )));
    }
    Ok(String::from_utf8(v)
        .map_err(|_| format!("{} layer {} is not UTF-8", l.media_type, l.digest)))
}

fn read_text(src: &dyn BlobSource, l: &Layer) -> Result<String> {
    try_read_text(src, l)?.map_err(Error::Corrupt)
}

/// The name each layer gets in the model directory, in manifest order.
pub fn layer_names(layers: &[Layer]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in layers {
        if let Some((base, _)) = layer_file(&l.media_type) {
            *counts.entry(base).or_default() += 1;
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    layers
        .iter()
        .map(|l| match layer_file(&l.media_type) {
            Some((base, ext)) if counts[base] > 1 => {
                let n = seen.entry(base).or_default();
                *n += 1;
                format!("{base}-{n}{ext}")
            }
            Some((base, ext)) => format!("{base}{ext}"),
            None => format!("layers/sha256-{}", l.digest.hex()),
        })
        .collect()
}

/// The PARAMETER keys ollama accepts in a Modelfile: the JSON names of `api.Options` and
/// `api.Runner` (`api.FormatParams` refuses any other), and the deprecated ones its parser
/// still takes with a warning (`deprecatedParameters` in `parser/parser.go`).
pub const PARAMETERS: &[&str] = &[
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
    "draft_num_predict",
    "num_keep",
    "seed",
    "num_predict",
    "top_k",
    "top_p",
    "min_p",
    "typical_p",
    "repeat_last_n",
    "temperature",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    // Deprecated: accepted with a warning.
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
];

/// The MESSAGE roles ollama's parser accepts (`isValidMessageRole`).
pub const ROLES: &[&str] = &["system", "user", "assistant"];

/// Writes `s` as a Modelfile value by ollama's grammar (`parser/parser.go`), or says why it
/// cannot be. The parser has no escapes: a value ends at the first `\r` or `\n` once the text
/// before it, trimmed, is unquoted or a complete `"…"` or `"""…"""`, and characters that are not
/// printable (other than tab, CR and LF) are dropped. So: raw when the value has no CR or LF,
/// no leading or trailing space or tab and does not start with `"`; else `"…"` when it holds no
/// `"`; else `"""…"""` when it holds no `"""`; else refused, as is any value holding a control
/// or format character other than tab, CR and LF, or a space other than U+0020.
pub fn quote(s: &str) -> std::result::Result<String, String> {
    if let Some(c) = s.chars().find(|&c| {
        !matches!(c, '\t' | '\n' | '\r')
            && (crate::format::text::is_unsafe_char(c) || (c.is_whitespace() && c != ' '))
    }) {
        return Err(format!(
            "holds U+{:04X}, which ollama's Modelfile parser would drop",
            c as u32
        ));
    }
    let blank = |c: char| c == ' ' || c == '\t';
    let needs_quotes = s.contains(['\n', '\r'])
        || s.starts_with(blank)
        || s.ends_with(blank)
        || s.starts_with('"');
    if !needs_quotes {
        return Ok(s.to_string());
    }
    if !s.contains('"') {
        return Ok(format!("\"{s}\""));
    }
    if !s.contains("\"\"\"") {
        return Ok(format!("\"\"\"{s}\"\"\""));
    }
    Err(
        "needs quoting but holds both a line break or edge space and \"\"\", which ollama's \
         Modelfile grammar cannot quote (it has no escapes)"
            .into(),
    )
}

/// [`quote`] for the value of `what`, refusing the import when it cannot be written.
fn quoted(what: &str, s: &str) -> Result<String> {
    quote(s).map_err(|why| Error::Refused(format!("{what}: {why}")))
}

/// A Modelfile that rebuilds the model from the directory's files, in the order of ollama's
/// `Model.String` (`ollama show --modelfile`); `None` when there is no GGUF model layer.
pub fn modelfile(
    src: &dyn BlobSource,
    m: &OllamaModel,
    names: &[String],
) -> Result<Option<String>> {
    let of = |kind: &str| -> Vec<(&Layer, &String)> {
        m.layers
            .iter()
            .zip(names)
            .filter(|(l, _)| {
                l.media_type
                    .strip_prefix(crate::oci::ollama::LAYER_PREFIX)
                    .is_some_and(|k| k == kind || (kind == "template" && k == "prompt"))
            })
            .collect()
    };
    let models = of("model");
    if models.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (_, n) in &models {
        out.push(format!("FROM ./{n}"));
    }
    for (_, n) in of("adapter") {
        out.push(format!("ADAPTER ./{n}"));
    }
    for (_, n) in of("projector") {
        out.push(format!("FROM ./{n}"));
    }
    // As ollama does, the last template and system layer win.
    if let Some((l, _)) = of("template").last() {
        let what = format!("template layer {}", l.digest);
        out.push(format!("TEMPLATE {}", quoted(&what, &read_text(src, l)?)?));
    }
    if let Some((l, _)) = of("system").last() {
        let s = read_text(src, l)?;
        if !s.is_empty() {
            let what = format!("system layer {}", l.digest);
            out.push(format!("SYSTEM {}", quoted(&what, &s)?));
        }
    }
    // The config is optional reading: one that is not JSON text just gives no RENDERER/PARSER.
    if let Ok(text) = try_read_text(src, &m.config)? {
        if let Ok(cfg) = json::from_slice::<serde_json::Value>(text.as_bytes(), "config") {
            for key in ["renderer", "parser"] {
                if let Some(v) = cfg
                    .get(key)
                    .and_then(|v| v.as_str())
                    .filter(|v| !v.is_empty())
                {
                    let what = format!("{key} in config {}", m.config.digest);
                    out.push(format!("{} {}", key.to_uppercase(), quoted(&what, v)?));
                }
            }
        }
    }
    if let Some((l, _)) = of("params").last() {
        let text = read_text(src, l)?;
        let params: serde_json::Map<String, serde_json::Value> =
            json::from_slice(text.as_bytes(), "params").map_err(|e| {
                Error::Corrupt(format!(
                    "params layer {}: not a JSON object: {}",
                    l.digest,
                    e.detail()
                ))
            })?;
        let mut keys: Vec<&String> = params.keys().collect();
        keys.sort();
        let value = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for k in keys {
            if !PARAMETERS.contains(&k.as_str()) {
                return Err(Error::Refused(format!(
                    "params layer {}: parameter \"{}\" is not one ollama accepts ({})",
                    l.digest,
                    crate::format::text::escape(k),
                    PARAMETERS.join(", ")
                )));
            }
            let what = format!("params layer {}: parameter {k}", l.digest);
            match &params[k] {
                serde_json::Value::Array(items) => {
                    for it in items {
                        out.push(format!("PARAMETER {k} {}", quoted(&what, &value(it))?));
                    }
                }
                v => out.push(format!("PARAMETER {k} {}", quoted(&what, &value(v))?)),
            }
        }
    }
    for (l, _) in of("license") {
        let what = format!("license layer {}", l.digest);
        out.push(format!("LICENSE {}", quoted(&what, &read_text(src, l)?)?));
    }
    if let Some((l, _)) = of("messages").last() {
        #[derive(serde::Deserialize)]
        struct Msg {
            role: String,
            content: String,
        }
        let msgs: Vec<Msg> = json::from_slice(read_text(src, l)?.as_bytes(), "messages")
            .map_err(|e| Error::Corrupt(format!("messages layer {}: {}", l.digest, e.detail())))?;
        for (i, msg) in msgs.iter().enumerate() {
            if !ROLES.contains(&msg.role.as_str()) {
                return Err(Error::Refused(format!(
                    "messages layer {}: message {i} has role \"{}\", not one of {} (the roles \
                     ollama's Modelfile accepts)",
                    l.digest,
                    crate::format::text::escape(&msg.role),
                    ROLES.join(", ")
                )));
            }
            let what = format!("messages layer {}: message {i}", l.digest);
            out.push(format!(
                "MESSAGE {} {}",
                msg.role,
                quoted(&what, &msg.content)?
            ));
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Digest;
    use crate::oci::ollama::OllamaName;

    fn layer(kind: &str, seed: &[u8]) -> Layer {
        Layer {
            media_type: format!("application/vnd.ollama.image.{kind}"),
            digest: Digest::of(seed),
            size: seed.len() as u64,
        }
    }

    #[test]
    fn layers_are_named_and_numbered() {
        let ls = vec![
            layer("model", b"m"),
            layer("license", b"l1"),
            layer("template", b"t"),
            layer("license", b"l2"),
            layer("projector", b"p"),
            layer("tensor", b"x"),
        ];
        assert_eq!(
            layer_names(&ls),
            vec![
                "model.gguf".to_string(),
                "license-1".into(),
                "template".into(),
                "license-2".into(),
                "projector.gguf".into(),
                format!("layers/sha256-{}", Digest::of(b"x").hex()),
            ]
        );
    }

    #[test]
    fn values_are_quoted_as_ollama_quotes_them() {
        let q = |s: &str| quote(s).unwrap();
        assert_eq!(q("0.7"), "0.7");
        assert_eq!(q("<|end|>"), "<|end|>");
        assert_eq!(q("a\nb"), "\"a\nb\"");
        assert_eq!(q("say \"hi\"\n"), "\"\"\"say \"hi\"\n\"\"\"");
        assert_eq!(q(" x"), "\" x\"");
        // A bare CR ends a line for ollama too; a leading quote would open a quoted value.
        assert_eq!(q("a\rb"), "\"a\rb\"");
        assert_eq!(q("\"x"), "\"\"\"\"x\"\"\"");
        assert_eq!(q("x\t"), "\"x\t\"");
        // What the grammar cannot carry is refused.
        assert!(quote("x\"\"\"\nFROM /etc/passwd").is_err());
        assert!(quote("a\u{1b}[2Kb").is_err());
        assert!(quote("zero\u{200b}width").is_err());
        assert!(quote("nb\u{a0}sp").is_err());
    }

    struct Mem(HashMap<Digest, Vec<u8>>);

    impl BlobSource for Mem {
        fn size(&self, d: &Digest) -> Option<u64> {
            self.0.get(d).map(|b| b.len() as u64)
        }
        fn open(&self, d: &Digest) -> Result<Box<dyn Read + Send + '_>> {
            Ok(Box::new(std::io::Cursor::new(self.0[d].as_slice())))
        }
    }

    #[test]
    fn the_modelfile_rebuilds_the_model_from_the_directory() {
        let mut mem = Mem(HashMap::new());
        let mut add = |kind: &str, body: &[u8]| {
            mem.0.insert(Digest::of(body), body.to_vec());
            Layer {
                media_type: if kind == "config" {
                    "application/vnd.docker.container.image.v1+json".into()
                } else {
                    format!("application/vnd.ollama.image.{kind}")
                },
                digest: Digest::of(body),
                size: body.len() as u64,
            }
        };
        let layers = vec![
            add("model", b"GGUF1"),
            add("adapter", b"GGUF2"),
            add("projector", b"GGUF3"),
            add("projector", b"GGUF4"),
            add("prompt", b"{{ .Prompt }}"),
            add("system", b"Say \"hi\".\nThen stop."),
            add(
                "params",
                br#"{"top_k":40,"stop":["a b","<x>"],"penalize_newline":true}"#,
            ),
            add(
                "messages",
                br#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello "}]"#,
            ),
        ];
        let config = add("config", br#"{"renderer":"qwen3","parser":""}"#);
        let m = OllamaModel {
            name: OllamaName::parse("m").unwrap(),
            manifest: b"{}".to_vec(),
            digest: Digest::of(b"{}"),
            config,
            layers,
        };
        let names = layer_names(&m.layers);
        let mf = modelfile(&mem, &m, &names).unwrap().unwrap();
        assert_eq!(
            mf,
            "FROM ./model.gguf\n\
             ADAPTER ./adapter.gguf\n\
             FROM ./projector-1.gguf\n\
             FROM ./projector-2.gguf\n\
             TEMPLATE {{ .Prompt }}\n\
             SYSTEM \"\"\"Say \"hi\".\nThen stop.\"\"\"\n\
             RENDERER qwen3\n\
             PARAMETER penalize_newline true\n\
             PARAMETER stop a b\n\
             PARAMETER stop <x>\n\
             PARAMETER top_k 40\n\
             MESSAGE user hi\n\
             MESSAGE assistant \"hello \"\n"
        );
        // Without a GGUF model layer there is nothing to build FROM.
        let m2 = OllamaModel {
            layers: m.layers[1..].to_vec(),
            ..m
        };
        assert_eq!(
            modelfile(&mem, &m2, &layer_names(&m2.layers)).unwrap(),
            None
        );
    }
}
