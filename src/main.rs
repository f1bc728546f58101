//! The `jwks-edge` binary: parses the command line and hands over to `cli`.

mod cli;
mod demo;
mod shutdown;

fn main() -> std::process::ExitCode {
    cli::main()
}
