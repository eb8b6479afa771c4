use serde::Serialize;

use crate::cli::KeygenArgs;
use crate::error::Result;
use crate::output::{escape, Printer};
use crate::sign;

#[derive(Serialize, schemars::JsonSchema)]
pub(crate) struct Report {
    secret_key: String,
    public_key: String,
    key_id: String,
    encrypted: bool,
}

pub fn run(args: KeygenArgs, printer: &Printer) -> Result<()> {
    let (pub_path, public) = sign::generate(&args.out, !args.unencrypted)?;
    let r = Report {
        secret_key: args.out.display().to_string(),
        public_key: pub_path.display().to_string(),
        key_id: public.id.to_string(),
        encrypted: !args.unencrypted,
    };
    printer.report(&r, || {
        format!(
            "secret key  {} ({})\npublic key  {}\nkey id      {}\n",
            escape(&r.secret_key),
            if r.encrypted {
                "passphrase-protected"
            } else {
                "UNENCRYPTED"
            },
            escape(&r.public_key),
            escape(&r.key_id)
        )
    });
    Ok(())
}
