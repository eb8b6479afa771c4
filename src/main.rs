//! The `airlock` binary: parse, run, map the outcome to an exit code.

use airlock::error::{exit, Error};
use airlock::output::Printer;

fn main() {
    // A file-size limit (RLIMIT_FSIZE) must surface as a write error (EFBIG) naming the file,
    // not kill the process with SIGXFSZ halfway through an import.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN before any thread starts is sound.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let cli = match airlock::cli::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        // --help and --version: their text on stdout, exit 0, as clap does.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Parsing failed, so whether --json was given is read from the arguments as they
            // are (before a `--`): with it, the JSON error object goes to stdout too.
            let json = std::env::args_os()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            let printer = Printer { json, quiet: false };
            std::process::exit(printer.usage_error(&e));
        }
    };
    let printer = Printer {
        json: cli.json,
        quiet: cli.quiet,
    };
    // Every retry and resume of a network request, as it happens, on stderr.
    let (json, quiet) = (cli.json, cli.quiet);
    airlock::net::on_retry(move |line| Printer { json, quiet }.note(line));
    let code = match airlock::commands::run(cli, &printer) {
        Ok(()) => exit::OK,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            exit::OK
        }
        Err(e) => {
            printer.error(&e);
            e.exit_code()
        }
    };
    std::process::exit(code);
}
