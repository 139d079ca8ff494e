//! The `rse` command.

fn main() {
    println!("rse {}", env!("CARGO_PKG_VERSION"));
}
