//! The `rse` command: runs the syncs a TOML file describes, from a shell, a Kubernetes
//! CronJob or a systemd timer. `rse --help` lists the commands and the exit codes.

mod cmd;

fn main() -> std::process::ExitCode {
    cmd::main()
}
