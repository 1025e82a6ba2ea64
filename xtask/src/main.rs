//! Developer tasks: `cargo xtask setup|build|run|dist|test|vm|bench`.

mod vm;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
enum Cmd {
    /// Run a VM smoke job (development aid for the VM harness).
    VmSmoke {
        #[arg(long, default_value = "6.12")]
        kernel: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cmd::parse() {
        Cmd::VmSmoke { kernel } => {
            for (name, k) in vm::resolve(&kernel) {
                let k = k?;
                let out = vm::run(
                    &k,
                    &vm::Job {
                        files: vec![],
                        script: "uname -r".into(),
                        timeout: std::time::Duration::from_secs(120),
                    },
                )?;
                println!("{name}: {out:?}");
            }
            Ok(())
        }
    }
}
